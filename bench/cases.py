"""The benchmark cases: one table shared by the pytest-benchmark suite (bench/test_bench.py), the
peer table (bench/peers.py) and the CI smoke test (tests/test_bench_smoke.py).

A case is (name, op, input shape, weight shape, keyword arguments); the keyword arguments use
torch.nn.functional's names, which convcore's functions share. Every case has a bias.
ISSUE_CASES are the shapes of the performance issue, EXTRA_CASES other regimes (stem convs,
grouped, audio, few-channel upsampling) so that a new shape is not a surprise.
"""
import math
from typing import NamedTuple

import numpy as np

from convcore import _shapes


class Case(NamedTuple):
    name: str
    op: str  # conv1d, conv2d, conv_transpose1d or conv_transpose2d
    x_shape: tuple
    w_shape: tuple
    kwargs: dict

    @property
    def transposed(self):
        return self.op.startswith("conv_transpose")

    @property
    def ndim(self):
        """Number of spatial dimensions."""
        return len(self.x_shape) - 2

    @property
    def groups(self):
        return self.kwargs.get("groups", 1)

    @property
    def c_out(self):
        return self.w_shape[1] * self.groups if self.transposed else self.w_shape[0]

    def arg(self, key, default):
        """Keyword argument ``key`` as one int per spatial dimension."""
        value = self.kwargs.get(key, default)
        return (value,) * self.ndim if isinstance(value, int) else tuple(value)

    @property
    def out_shape(self):
        k, s, p, d = self.w_shape[2:], self.arg("stride", 1), self.arg("padding", 0), self.arg("dilation", 1)
        if self.transposed:
            op = self.arg("output_padding", 0)
            spatial = [_shapes.conv_transpose_out_size(*a) for a in zip(self.x_shape[2:], k, s, p, op, d)]
        else:
            spatial = [_shapes.conv_out_size(i, kk, ss, pp, pp, dd)
                       for i, kk, ss, pp, dd in zip(self.x_shape[2:], k, s, p, d)]
        return (self.x_shape[0], self.c_out, *spatial)

    @property
    def flops(self):
        """2 * multiply-adds. A transposed conv does every input x weight product (cropped ones
        included), as its GEMM formulation does; a conv does one dot product per output."""
        macs_per_point = self.w_shape[1] * math.prod(self.w_shape[2:])
        if self.transposed:  # N*Cin*prod(in) points, each times Cout/groups*prod(k)
            return 2 * math.prod(self.x_shape) * macs_per_point
        return 2 * math.prod(self.out_shape) * macs_per_point

    def inputs(self, dtype, seed=0):
        """(x, w, bias) as C-contiguous arrays of ``dtype``; weights scaled like torch's init so
        outputs stay O(1) for any reduction length."""
        rng = np.random.default_rng(seed)
        x = rng.standard_normal(self.x_shape).astype(dtype)
        bound = 1.0 / math.sqrt(self.w_shape[1] * math.prod(self.w_shape[2:]))
        w = rng.uniform(-bound, bound, self.w_shape).astype(dtype)
        b = rng.uniform(-bound, bound, self.c_out).astype(dtype)
        return x, w, b

    @property
    def reduction_length(self):
        """Terms summed into one output element (for tolerances)."""
        k = math.prod(self.w_shape[2:])
        if self.transposed:  # each output gathers from Cin/groups channels and up to prod(k) taps
            return self.w_shape[0] // self.groups * k
        return self.w_shape[1] * k

    def tiny(self):
        """The same op and arguments on a small problem: batch <= 2, <= 4 groups of <= 4 channels
        each, spatial sizes <= 16 (kernel, stride, padding, dilation unchanged)."""
        g = min(self.groups, 4)
        if self.transposed:
            c_in, c_out_g = self.w_shape[0] // self.groups, self.w_shape[1]
        else:
            c_in, c_out_g = self.x_shape[1] // self.groups, self.w_shape[0] // self.groups
        c_in, c_out_g = min(c_in, 4), min(c_out_g, 4)
        x_shape = (min(self.x_shape[0], 2), g * c_in, *(min(s, 16) for s in self.x_shape[2:]))
        if self.transposed:
            w_shape = (g * c_in, c_out_g, *self.w_shape[2:])
        else:
            w_shape = (g * c_out_g, c_in, *self.w_shape[2:])
        kwargs = dict(self.kwargs, groups=g) if "groups" in self.kwargs else self.kwargs
        return Case(self.name + "-tiny", self.op, x_shape, w_shape, kwargs)


def _c(name, op, x_shape, w_shape, **kwargs):
    return Case(name, op, x_shape, w_shape, kwargs)


ISSUE_CASES = [
    _c("T2-s2-k3", "conv_transpose2d", (20, 16, 50, 100), (16, 33, 3, 3), stride=2),
    _c("T2-s21-k35", "conv_transpose2d", (20, 16, 50, 100), (16, 33, 3, 5), stride=(2, 1), padding=(4, 2)),
    _c("T2-dcgan", "conv_transpose2d", (16, 512, 8, 8), (512, 256, 4, 4), stride=2, padding=1),
    _c("T2-unet", "conv_transpose2d", (8, 128, 64, 64), (128, 64, 2, 2), stride=2),
    _c("T2-g4-d2", "conv_transpose2d", (8, 64, 32, 32), (64, 16, 3, 3),
       stride=2, padding=1, groups=4, dilation=2, output_padding=1),
    _c("T2-dw", "conv_transpose2d", (8, 64, 64, 64), (64, 1, 3, 3),
       stride=2, padding=1, groups=64, output_padding=1),
    _c("T1-tiny", "conv_transpose1d", (10, 32, 2), (32, 16, 2)),
    _c("T1-audio", "conv_transpose1d", (4, 256, 1000), (256, 128, 16), stride=8, padding=4),
    _c("C2-dil", "conv2d", (20, 16, 50, 100), (33, 16, 3, 5), stride=(2, 1), padding=(4, 2), dilation=(3, 1)),
    _c("C2-resnet", "conv2d", (8, 64, 56, 56), (64, 64, 3, 3), padding=1),
    _c("C2-1x1", "conv2d", (8, 256, 56, 56), (64, 256, 1, 1)),
    _c("C2-dw", "conv2d", (8, 128, 56, 56), (128, 1, 3, 3), padding=1, groups=128),
]

EXTRA_CASES = [
    _c("C1-audio", "conv1d", (8, 64, 8000), (64, 64, 9), padding=4),
    _c("C1-wavstem", "conv1d", (4, 1, 16000), (512, 1, 10), stride=5),
    _c("C2-stem7", "conv2d", (4, 3, 224, 224), (64, 3, 7, 7), stride=2, padding=3),
    _c("C2-s2", "conv2d", (8, 128, 28, 28), (256, 128, 3, 3), stride=2, padding=1),
    _c("C2-resnext-g32", "conv2d", (8, 256, 28, 28), (256, 8, 3, 3), padding=1, groups=32),
    _c("T2-rgb-4x4", "conv_transpose2d", (16, 32, 64, 64), (32, 3, 4, 4), stride=2, padding=1),
    _c("T2-s1", "conv_transpose2d", (8, 64, 32, 32), (64, 32, 3, 3), padding=1),
    _c("T1-s1", "conv_transpose1d", (8, 64, 2000), (64, 64, 7), padding=3),
    # small planes and batch-1 inference: a ResNet stage-4 conv (batch 8 and 1), a stage-3 conv on
    # one image, a latent projected to 4x4, a U-Net upsampling and a vocoder upsampler on one item
    _c("C2-7x7-512", "conv2d", (8, 512, 7, 7), (512, 512, 3, 3), padding=1),
    _c("C2-7x7-512-b1", "conv2d", (1, 512, 7, 7), (512, 512, 3, 3), padding=1),
    _c("C2-14x14-b1", "conv2d", (1, 256, 14, 14), (256, 256, 3, 3), padding=1),
    _c("T2-latent", "conv_transpose2d", (16, 100, 1, 1), (100, 512, 4, 4)),
    _c("T2-unet-b1", "conv_transpose2d", (1, 512, 16, 16), (512, 256, 2, 2), stride=2),
    _c("T1-vocoder-b1", "conv_transpose1d", (1, 512, 200), (512, 256, 16), stride=8, padding=4),
]

CASES = ISSUE_CASES + EXTRA_CASES
# The issue's GEMM-bound cases, held to >= 70% of the measured GEMM peak.
GEMM_BOUND = ("T2-dcgan", "T1-audio", "C2-resnet")
BY_NAME = {c.name: c for c in CASES}
DTYPES = (np.float32, np.float64)


def select(names):
    """The cases named in ``names`` (all when empty), in table order; unknown names raise."""
    if not names:
        return list(CASES)
    unknown = set(names) - set(BY_NAME)
    if unknown:
        raise ValueError(f"unknown case(s) {sorted(unknown)}; known: {', '.join(BY_NAME)}")
    return [c for c in CASES if c.name in names]


def tolerance(case, dtype):
    """Loose (atol, rtol) for comparing two implementations; outputs are O(1) by construction."""
    eps = 1e-5 if np.dtype(dtype) == np.float32 else 1e-12
    tol = 10 * eps * math.sqrt(case.reduction_length)
    return tol, tol
