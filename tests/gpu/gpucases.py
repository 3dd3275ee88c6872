"""Random kernel-contract cases shared by the host-emulation and the GPU tests."""
from typing import NamedTuple

import numpy as np

from convcore import _shapes
from convcore._gpu import _plan
from reference import conv2d_ref, conv_transpose2d_ref


class Case(NamedTuple):
    transposed: bool
    x: np.ndarray
    w: np.ndarray
    bias: np.ndarray  # length 0: no bias
    out_shape: tuple
    stride: tuple
    pad: tuple  # before the first row/column
    dilation: tuple
    groups: int

    def reference(self):
        ref = conv_transpose2d_ref if self.transposed else conv2d_ref
        return ref(self.x, self.w, self.bias if self.bias.size else None, self.out_shape[2:],
                   self.stride, self.pad, self.dilation, self.groups)

    def paths(self):
        """Every GPU launch plan that can compute this case (the launcher picks one)."""
        if self.transposed:
            return _plan.conv_transpose2d_paths(self.x.shape, self.w.shape, self.out_shape,
                                                self.stride, self.pad, self.dilation, self.groups)
        return _plan.conv2d_paths(self.x.shape, self.w.shape, self.out_shape, self.stride, self.pad,
                                  self.groups)

    def reduction_length(self):
        cig = self.x.shape[1] // self.groups
        return cig * self.w.shape[2] * self.w.shape[3]

    def kernel_args(self):
        """The arguments after ``(x, w, bias, out)`` in the kernel contract."""
        return (*self.stride, *self.pad, *self.dilation, self.groups)


def _ints(rng, low, high, n=2):
    return tuple(int(v) for v in rng.integers(low, high + 1, n))


def random_case(rng, dtype, transposed):
    """A small random case: groups, dilation, strides, asymmetric padding, depthwise, N > 1."""
    while True:
        n = int(rng.integers(1, 4))
        groups = int(rng.integers(1, 4))
        cig = 1 if rng.random() < 0.3 else int(rng.integers(1, 4))
        cog = int(rng.integers(1, 4))
        h, wd = _ints(rng, 1, 9)
        kernel = _ints(rng, 1, 4)
        stride = _ints(rng, 1, 3)
        dilation = (1, 1) if rng.random() < 0.4 else _ints(rng, 1, 3)
        pad = _ints(rng, 0, 3)
        pointwise = rng.random() < 0.15  # 1x1, stride 1, no padding: the plain-GEMM path
        if pointwise:
            kernel, stride, dilation, pad = (1, 1), (1, 1), (1, 1), (0, 0)
        if transposed:
            out_pad = tuple(int(rng.integers(0, max(s, d))) for s, d in zip(stride, dilation))
            sizes = tuple(_shapes.conv_transpose_out_size(i, k, s, p, op, d) for i, k, s, p, op, d
                          in zip((h, wd), kernel, stride, pad, out_pad, dilation))
            w_shape = (groups * cig, cog, *kernel)
        else:
            # asymmetric padding arrives through the output shape
            pad_end = (0, 0) if pointwise else _ints(rng, 0, 3)
            sizes = tuple(_shapes.conv_out_size(i, k, s, p, pe, d) for i, k, s, p, pe, d
                          in zip((h, wd), kernel, stride, pad, pad_end, dilation))
            w_shape = (groups * cog, cig, *kernel)
        if min(sizes) >= 1:
            break
    x = rng.standard_normal((n, groups * cig, h, wd)).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    bias = rng.standard_normal(groups * cog).astype(dtype) if rng.random() < 0.6 \
        else np.empty(0, dtype)
    return Case(transposed, x, w, bias, (n, groups * cog, *sizes), stride, pad, dilation, groups)


def assert_close(got, case):
    """Compare with the float64 reference; tolerance per dtype, scaled with the reduction length."""
    ref = case.reference()
    eps = 1e-5 if np.dtype(got.dtype) == np.float32 else 1e-12
    tol = eps * np.sqrt(case.reduction_length()) * max(1.0, float(np.abs(ref).max()))
    np.testing.assert_allclose(np.asarray(got, dtype=np.float64), ref, rtol=0, atol=tol)
