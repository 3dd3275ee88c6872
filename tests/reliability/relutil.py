"""Helpers of the reliability tests: torch as the oracle, and isolated child processes (a crash
there fails one test instead of killing pytest; an address-space limit protects the machine)."""
import json
import math
import subprocess
import sys
import textwrap
import warnings

import numpy as np

import convcore

OPS = ("conv1d", "conv2d", "conv_transpose1d", "conv_transpose2d")
NDIM = {"conv1d": 1, "conv2d": 2, "conv_transpose1d": 1, "conv_transpose2d": 2}
TRANSPOSED = {"conv1d": False, "conv2d": False, "conv_transpose1d": True, "conv_transpose2d": True}
# per-element error bound relative to sum |x*w| + |b|, per sqrt(reduction length)
RTOL = {np.dtype(np.float32): 2e-6, np.dtype(np.float64): 1e-13}


def under_sanitizer():
    """True in tests/sanitize.sh's runs (libasan preloaded)."""
    try:
        with open("/proc/self/maps") as f:
            return "libasan" in f.read()
    except OSError:
        return False


def convcore_conv(op, x, w, b=None, **kwargs):
    return getattr(convcore, op)(x, w, b, **kwargs)


def torch_conv(op, x, w, b=None, **kwargs):
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


def assert_matches_torch(op, got, x, w, b=None, **kwargs):
    """``got`` has torch's shape, the input's dtype, and torch's float64 values within
    RTOL * sqrt(K) of sum |x*w| + |b| per element."""
    x, w = np.asarray(x), np.asarray(w)

    def f64(a):
        return None if a is None else np.asarray(a, dtype=np.float64)

    ref = torch_conv(op, f64(x), f64(w), f64(b), **kwargs)
    mag = torch_conv(op, np.abs(f64(x)), np.abs(f64(w)), None if b is None else np.abs(f64(b)), **kwargs)
    assert isinstance(got, np.ndarray)
    assert got.dtype == x.dtype, (got.dtype, x.dtype)
    assert got.shape == ref.shape, (got.shape, ref.shape)
    k = reduction_length(op, w, kwargs.get("groups", 1))
    bound = RTOL[x.dtype] * math.sqrt(k) * mag + np.finfo(x.dtype).tiny
    err = np.abs(got.astype(np.float64) - ref)
    if not np.all(err <= bound):
        worst = np.unravel_index(np.argmax(err / bound), err.shape)
        raise AssertionError(
            f"{op}{kwargs} x{x.shape} w{w.shape}: error {err[worst]:.3g} > bound {bound[worst]:.3g} "
            f"at {worst}: got {got[worst]!r}, torch {ref[worst]!r}"
        )


# Prepended to every child: the address-space limit turns any attempt to allocate a giant
# buffer into a MemoryError instead of letting the kernel write it into swap and the OOM killer.
# Under AddressSanitizer (which reserves terabytes of shadow memory) tests/sanitize.sh sets
# max_allocation_size_mb instead.
_CHILD_PRELUDE = """
import json, os, resource, sys
import numpy as np
import convcore

def _vm_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024

if {limit} and "libasan" not in open("/proc/self/maps").read():
    _lim = _vm_bytes() + {limit}
    resource.setrlimit(resource.RLIMIT_AS, (_lim, _lim))

def report(**result):
    print("RESULT " + json.dumps(result), flush=True)
"""


def run_child(body, headroom_bytes=2 * 2**30, timeout=120):
    """Run ``body`` in a fresh interpreter that may map at most ``headroom_bytes`` more than it
    has after importing convcore; return (returncode, results reported by ``report(**kw)``, output)."""
    code = _CHILD_PRELUDE.format(limit=int(headroom_bytes)) + textwrap.dedent(body)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
    results = [json.loads(line[7:]) for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    return proc.returncode, results, proc.stdout + proc.stderr
