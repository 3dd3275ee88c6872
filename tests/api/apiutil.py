"""PyTorch as the oracle for convcore's public API: calling torch the way convcore was called,
and comparing results with tolerances scaled by the reduction length."""

import numpy as np

import convcore
from torch_oracle import NDIM, OPS, TRANSPOSED, assert_close_to_torch, torch_call  # noqa: F401

# per-element error bound, relative to sum |x*w| + |b|, per sqrt(reduction length)
RTOL = {np.dtype(np.float32): 2e-6, np.dtype(np.float64): 2e-14}


def convcore_call(op, x, w, b=None, **kwargs):
    return getattr(convcore, op)(x, w, b, **kwargs)


def assert_matches_torch(op, x, w, b=None, **kwargs):
    """convcore's result, checked against torch (torch_oracle.assert_close_to_torch)."""
    got = convcore_call(op, x, w, b, **kwargs)
    assert_close_to_torch(op, got, x, w, b, RTOL, **kwargs)
    return got


def first_line(exc):
    return str(exc).splitlines()[0] if str(exc) else ""
