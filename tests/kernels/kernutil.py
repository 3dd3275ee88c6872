"""Helpers shared by the kernel tests: the tolerance rule, and conv2d cases as spec tuples
(x_shape, w_shape, out_hw, stride, pad, dilation, groups) run straight through a kernel."""
import numpy as np
from reference import conv2d_ref

from convcore._kernels import conv


def tolerance(dtype, k):
    """Absolute tolerance per unit of output scale for a reduction of length k."""
    return (1e-12 if dtype == np.float64 else 2e-5) * np.sqrt(k)


def make(rng, spec, dtype, bias=True):
    """Random x, w and bias (empty when `bias` is false) for a conv2d spec."""
    x_shape, w_shape = spec[0], spec[1]
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype) if bias else np.empty(0, dtype)
    return x, w, b


def path_of(spec, dtype=np.float64):
    """The conv2d dispatcher's path for a spec."""
    x, w, out_hw, stride, pad, dilation, groups = spec
    return conv._path_for(x, w, (x[0], w[0], *out_hw), *stride, *pad, *dilation, groups, np.dtype(dtype).itemsize)


def call(kernel, spec, x, w, b, num_threads=2, prefill=np.nan):
    """A conv2d kernel's output for a spec, into an array prefilled with `prefill`."""
    _, _, out_hw, stride, pad, dilation, groups = spec
    out = np.full((x.shape[0], w.shape[0], *out_hw), prefill, x.dtype)
    kernel(x, w, b, out, *stride, *pad, *dilation, groups, num_threads)
    return out


def check(kernel, spec, dtype, rng, bias=True, num_threads=2):
    """A conv2d kernel's output for a random spec against the float64 reference, within the
    tolerance of its reduction length; returns (x, w, b, out)."""
    x, w, b = make(rng, spec, dtype, bias)
    out = call(kernel, spec, x, w, b, num_threads)
    _, _, out_hw, stride, pad, dilation, groups = spec
    expected = conv2d_ref(x, w, b if b.size else None, out_hw, stride, pad, dilation, groups)
    scale = max(1.0, np.abs(expected).max(initial=0))
    k = w.shape[1] * w.shape[2] * w.shape[3]
    np.testing.assert_allclose(out, expected, rtol=0, atol=tolerance(dtype, k) * scale, err_msg=str(spec))
    return x, w, b, out
