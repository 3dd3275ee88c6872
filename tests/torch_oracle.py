"""PyTorch as the oracle: torch called the way convcore was called, and the comparison with a
per-element bound RTOL * sqrt(K) * (sum |x*w| + |b|), the rounding-error bound of any summation order."""
import math
import warnings

import numpy as np

OPS = ("conv1d", "conv2d", "conv_transpose1d", "conv_transpose2d")
NDIM = {"conv1d": 1, "conv2d": 2, "conv_transpose1d": 1, "conv_transpose2d": 2}
TRANSPOSED = {"conv1d": False, "conv2d": False, "conv_transpose1d": True, "conv_transpose2d": True}


def torch_call(op, x, w, b=None, **kwargs):
    """torch's answer to ``convcore.<op>(x, w, b, **kwargs)``, as a numpy array.

    ``padding_mode`` is not an argument of torch's functions, so such calls go through
    ``torch.nn.Conv1d/Conv2d`` holding ``w`` and ``b``, where torch defines it.
    """
    import torch
    import torch.nn.functional as F

    def tensor(a):  # a copy: torch refuses read-only and negative-stride views
        return None if a is None else torch.from_numpy(np.array(a, order="C"))

    tx, tw, tb = tensor(x), tensor(w), tensor(b)
    kwargs = dict(kwargs)
    mode = kwargs.pop("padding_mode", "zeros")
    with torch.no_grad(), warnings.catch_warnings():
        # 'same' with an even kernel, zero-element initialisation: torch's notes, not errors
        warnings.simplefilter("ignore")
        if mode == "zeros":
            return getattr(F, op)(tx, tw, tb, **kwargs).numpy()
        groups = kwargs.get("groups", 1)
        padding = kwargs.get("padding", 0)
        if isinstance(padding, (list, tuple)) and len(padding) == 1:
            # F.convNd's rule (one value for every dimension); the modules would pad one dimension only
            kwargs["padding"] = tuple(padding) * (tw.dim() - 2)
        module = (torch.nn.Conv1d if op == "conv1d" else torch.nn.Conv2d)(
            tw.shape[1] * groups, tw.shape[0], tuple(tw.shape[2:]), bias=tb is not None,
            padding_mode=mode, dtype=tw.dtype, **kwargs,
        )
        module.weight = torch.nn.Parameter(tw, requires_grad=False)
        if tb is not None:
            module.bias = torch.nn.Parameter(tb, requires_grad=False)
        return module(tx).numpy()


def reduction_length(op, w, groups):
    """Products summed into one output element (an upper bound for transposed ops)."""
    per_group_in = w.shape[0] // groups if TRANSPOSED[op] else w.shape[1]
    return max(1, per_group_in * math.prod(w.shape[2:]))


def assert_close_to_torch(op, got, x, w, b, rtol, **kwargs):
    """``got`` has torch's shape, the input's dtype, and torch's float64 values within
    rtol[dtype] * sqrt(K) of sum |x*w| + |b| per element."""
    x, w = np.asarray(x), np.asarray(w)

    def f64(a):
        return None if a is None else np.asarray(a, dtype=np.float64)

    ref = torch_call(op, f64(x), f64(w), f64(b), **kwargs)
    mag = torch_call(op, np.abs(f64(x)), np.abs(f64(w)), None if b is None else np.abs(f64(b)), **kwargs)
    assert isinstance(got, np.ndarray)
    assert got.dtype == x.dtype, (got.dtype, x.dtype)
    assert got.shape == ref.shape, (got.shape, ref.shape)
    k = reduction_length(op, w, kwargs.get("groups", 1))
    bound = rtol[x.dtype] * math.sqrt(k) * mag + np.finfo(x.dtype).tiny
    err = np.abs(got.astype(np.float64) - ref)
    if not np.all(err <= bound):
        worst = np.unravel_index(np.argmax(err / bound), err.shape)
        raise AssertionError(
            f"{op}{kwargs} x{x.shape} w{w.shape}: error {err[worst]:.3g} > bound {bound[worst]:.3g} "
            f"at {worst}: got {got[worst]!r}, torch {ref[worst]!r}"
        )
