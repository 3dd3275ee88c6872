"""PyTorch as the oracle for convcore's public API: calling torch the way convcore was called,
and comparing results with tolerances scaled by the reduction length."""
import math
import warnings

import numpy as np
import torch
import torch.nn.functional as F

import convcore

OPS = ("conv1d", "conv2d", "conv_transpose1d", "conv_transpose2d")
NDIM = {"conv1d": 1, "conv2d": 2, "conv_transpose1d": 1, "conv_transpose2d": 2}
TRANSPOSED = {"conv1d": False, "conv2d": False, "conv_transpose1d": True, "conv_transpose2d": True}
TORCH_FN = {op: getattr(F, op) for op in OPS}
TORCH_MODULE = {"conv1d": torch.nn.Conv1d, "conv2d": torch.nn.Conv2d}

# per-element error bound, relative to sum |x*w| + |b|, per sqrt(reduction length)
RTOL = {np.dtype(np.float32): 2e-6, np.dtype(np.float64): 2e-14}


def convcore_call(op, x, w, b=None, **kwargs):
    return getattr(convcore, op)(x, w, b, **kwargs)


def _tensor(a):
    # np.array, not np.ascontiguousarray, which turns 0-d arrays into 1-d ones
    return None if a is None else torch.from_numpy(np.array(a, order="C"))


def torch_call(op, x, w, b=None, **kwargs):
    """torch's answer to ``convcore.<op>(x, w, b, **kwargs)`` on the same dtypes (a numpy array).

    ``padding_mode`` is not an argument of torch's functions: such calls go through
    ``torch.nn.Conv1d/Conv2d`` holding ``w`` and ``b``, which is where torch defines it.
    """
    tx, tw, tb = _tensor(x), _tensor(w), _tensor(b)
    with torch.no_grad(), warnings.catch_warnings():
        # torch warns that 'same' with an even kernel copies the input; not our concern
        warnings.filterwarnings("ignore", message="Using padding='same'", category=UserWarning)
        # torch.nn.ConvNd with no input channels cannot initialise its (replaced) weight
        warnings.filterwarnings("ignore", message="Initializing zero-element tensors", category=UserWarning)
        mode = kwargs.pop("padding_mode", "zeros")
        if mode == "zeros":
            return TORCH_FN[op](tx, tw, tb, **kwargs).numpy()
        groups = kwargs.get("groups", 1)
        module = TORCH_MODULE[op](
            tw.shape[1] * groups, tw.shape[0], tuple(tw.shape[2:]), bias=tb is not None,
            padding_mode=mode, dtype=tw.dtype, **kwargs,
        )
        module.weight = torch.nn.Parameter(tw)
        if tb is not None:
            module.bias = torch.nn.Parameter(tb)
        return module(tx).numpy()


def reduction_length(op, w, groups):
    """Number of products summed into one output element (an upper bound for transposed ops)."""
    per_group_in = w.shape[0] // groups if TRANSPOSED[op] else w.shape[1]
    return max(1, per_group_in * math.prod(w.shape[2:]))


def assert_matches_torch(op, x, w, b=None, **kwargs):
    """convcore's result has torch's shape, the input's dtype, and torch's float64 values within
    RTOL * sqrt(K) of sum |x*w| + |b| per element (the rounding-error bound of any summation order)."""
    x, w = np.asarray(x), np.asarray(w)
    got = convcore_call(op, x, w, b, **kwargs)
    f64 = lambda a: None if a is None else np.asarray(a, dtype=np.float64)  # noqa: E731
    ref = torch_call(op, f64(x), f64(w), f64(b), **kwargs)
    absb = None if b is None else np.abs(f64(b))
    mag = torch_call(op, np.abs(f64(x)), np.abs(f64(w)), absb, **kwargs)
    assert isinstance(got, np.ndarray)
    assert got.dtype == x.dtype
    assert got.shape == ref.shape
    k = reduction_length(op, w, kwargs.get("groups", 1))
    bound = RTOL[x.dtype] * math.sqrt(k) * mag + np.finfo(x.dtype).tiny
    err = np.abs(got.astype(np.float64) - ref)
    if not np.all(err <= bound):
        worst = np.unravel_index(np.argmax(err / bound), err.shape)
        raise AssertionError(
            f"{op}{kwargs} x{x.shape} w{w.shape}: error {err[worst]:.3g} > bound {bound[worst]:.3g} "
            f"at {worst}: got {got[worst]!r}, torch {ref[worst]!r}"
        )
    return got


def first_line(exc):
    return str(exc).splitlines()[0] if str(exc) else ""
