"""The micro-kernel GEMM (convcore/_kernels/_microkernel.pxd) behind conv2d's "gemm" and "im2col"
paths and the sub-pixel transposed path.

Its blocking must not change a single bit: it sums every output as bias + w[0]*x[0] + ... in
order, exactly as the blocked path's single pass does, across reduction chunks of KC, row blocks
of MR (partial ones run narrower variants), column panels of NR (a last one of at most one
vector runs the half-width variant), with the panel copied or read in place (one row block).
So the GEMM paths are checked bitwise against conv2d_blocked, and against the reference.
"""
import numpy as np
import pytest
from kernutil import call, make, path_of, tolerance
from reference import conv2d_ref, conv_transpose2d_ref

from convcore._kernels import conv
from convcore._kernels.conv_blocked import KC, MR, NR, conv2d_blocked
from convcore._kernels.conv_transpose_subpixel import conv_transpose2d_subpixel

DTYPES = [np.float64, np.float32]


def conv_spec(n, cin, h, wd, cout, kh, kw, stride=1, pad=0, groups=1):
    oh = (h + 2 * pad - kh) // stride + 1
    ow = (wd + 2 * pad - kw) // stride + 1
    return ((n, cin, h, wd), (cout, cin // groups, kh, kw), (oh, ow), (stride, stride), (pad, pad), (1, 1), groups)


def blocking_specs(dtype):
    """Shapes on both sides of every blocking boundary of the GEMM paths, for this dtype."""
    kc, nr = KC[np.dtype(dtype).name], NR[np.dtype(dtype).name]
    specs = []
    # 1x1 ("gemm"): K = C_in across the chunk size; rows around MR; plane sizes around NR, NR/2
    for cin in (kc - 1, kc, kc + 1, 2 * kc + 3):
        for cout in (1, MR - 1, MR, MR + 1, 2 * MR + 3):
            for hw in ((1, nr // 2), (1, nr // 2 + 1), (1, nr), (3, nr + 1), (5, 7)):
                specs.append(conv_spec(2, cin, *hw, cout, 1, 1))
    # im2col: reductions past BLOCKED_MAX_K, chunk remainders, strides and padding, groups
    specs += [conv_spec(2, 460, 6, 7, 5, 3, 3, pad=1),
              conv_spec(1, 2 * (4 * kc + 1), 7, 5, 2 * (MR + 1), 3, 3, stride=2, pad=1, groups=2),
              conv_spec(3, 700, 4, 9, 2 * MR, 2, 3),
              conv_spec(1, 4200, 3, 3, 3, 1, 1, stride=2)]
    return specs


@pytest.mark.parametrize("dtype", DTYPES)
def test_blocking_specs_reach_both_paths(dtype):
    assert {path_of(s) for s in blocking_specs(dtype)} == {"gemm", "im2col"}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("num_threads", [1, 2])
def test_gemm_paths_match_the_blocked_kernel_bitwise(num_threads, dtype):
    rng = np.random.default_rng(40)
    for spec in blocking_specs(dtype):
        x, w, b = make(rng, spec, dtype, bias=rng.random() < 0.8)
        got = call(conv.conv2d, spec, x, w, b, num_threads)
        np.testing.assert_array_equal(got, call(lambda *a: conv2d_blocked(*a, source="im2col"), spec, x, w, b),
                                      err_msg=str(spec))
        expected = conv2d_ref(x, w, b if b.size else None, *spec[2:])
        k = w.shape[1] * w.shape[2] * w.shape[3]
        np.testing.assert_allclose(got, expected, rtol=0,
                                   atol=tolerance(dtype, k) * max(1.0, np.abs(expected).max()), err_msg=str(spec))


# small planes: GEMM tiles run over the batch's pixels and cross images (7x7 ResNet-like planes,
# 1x1 and K past BLOCKED_MAX_K, planes under a register block, a stride)
ACROSS_IMAGES = [conv_spec(5, 24, 7, 7, 11, 1, 1), conv_spec(4, 460, 3, 4, 9, 3, 3, pad=1),
                 conv_spec(6, 17, 1, 5, MR + 3, 1, 1), conv_spec(3, 4100, 5, 5, 6, 1, 1, stride=2, pad=1)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tile_bytes", [None, 1])
def test_tiles_across_images_match_the_blocked_kernel_bitwise(tile_bytes, dtype):
    """Tiles that cross image boundaries (columns gathered per image, results copied out per image),
    also with the smallest tiles (MIN_TILE pixels, cut mid-image): the same bits as one image at a time."""
    rng = np.random.default_rng(44)
    old = conv.set_tile_bytes(tile_bytes) if tile_bytes else None
    try:
        for spec in ACROSS_IMAGES:
            assert path_of(spec) in ("gemm", "im2col")
            x, w, b = make(rng, spec, dtype, bias=True)
            want = call(lambda *a: conv2d_blocked(*a, source="im2col"), spec, x, w, b)
            for nt in (1, 2):
                np.testing.assert_array_equal(call(conv.conv2d, spec, x, w, b, nt), want, err_msg=str(spec))
    finally:
        if old is not None:
            conv.set_tile_bytes(old)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, x_shape, w_shape, stride, pad", [
    # class-pair matrices of rows (members x C_out/groups) around MR, depth C_in*taps past KC
    ("DCGAN-like 4x4 s2", (2, 70, 5, 6), (70, 9, 4, 4), (2, 2), (1, 1)),
    ("kernel == stride, input is the column matrix", (3, 150, 4, 5), (150, 2, 2, 2), (2, 2), (0, 0)),
    ("one row block, unpacked panel", (2, 64, 7, 9), (64, 3, 3, 3), (2, 2), (1, 1)),
    ("1-D upsampler", (2, 40, 1, 37), (40, 5, 1, 16), (1, 8), (0, 4)),
])
def test_subpixel_past_the_reduction_chunk(name, x_shape, w_shape, stride, pad, dtype):
    out_hw = tuple((i - 1) * s - 2 * p + k for i, s, p, k in zip(x_shape[2:], stride, pad, w_shape[2:]))
    rng = np.random.default_rng(42)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[1]).astype(dtype)
    outs = []
    for nt in (1, 2):
        out = np.full((x_shape[0], w_shape[1], *out_hw), np.nan, dtype)
        conv_transpose2d_subpixel(x, w, b, out, *stride, *pad, 1, 1, 1, nt)
        outs.append(out)
    np.testing.assert_array_equal(outs[0], outs[1])
    expected = conv_transpose2d_ref(x, w, b, out_hw, stride, pad, (1, 1), 1)
    k = x_shape[1] * w_shape[2] * w_shape[3]
    np.testing.assert_allclose(outs[0], expected, rtol=0, atol=tolerance(dtype, k) * max(1.0, np.abs(expected).max()))


SUBPIXEL_SOURCE_CASES = {
    # name: (x_shape, w_shape, stride, pad, dilation, the source chosen)
    "RGB 4x4 s2 (3-row GEMMs)": ((2, 8, 5, 40), (8, 3, 4, 4), (2, 2), (1, 1), (1, 1), "block"),
    "3x3 s2, 33 channels": ((2, 6, 4, 70), (6, 33, 3, 3), (2, 2), (0, 0), (1, 1), "block"),
    "3x5 s(2,1) p(4,2)": ((2, 5, 6, 45), (5, 11, 3, 5), (2, 1), (4, 2), (1, 1), "block"),
    "1-D s8 k16 p4": ((3, 7, 1, 50), (7, 5, 1, 16), (1, 8), (0, 4), (1, 1), "block"),
    "stride 1, padding past the kernel": ((2, 6, 5, 40), (6, 9, 3, 3), (1, 1), (3, 3), (1, 1), "block"),
    "stride 1 dilated": ((1, 6, 6, 40), (6, 10, 3, 3), (1, 1), (1, 0), (2, 3), "block"),
    "padding past the kernel, short columns": ((1, 5, 2, 50), (5, 7, 2, 3), (3, 2), (1, 5), (1, 1), "block"),
    "narrow rows, few channels": ((2, 6, 5, 2), (6, 10, 3, 3), (2, 2), (1, 1), (1, 1), "im2col"),
    "long reduction, few channels": ((1, 200, 3, 40), (200, 9, 2, 2), (2, 2), (0, 0), (1, 1), "im2col"),
    "kernel == stride, many channels": ((2, 256, 5, 6), (256, 64, 2, 2), (2, 2), (0, 0), (1, 1), "pixel rows"),
    # output channels that fill vectors (48: a full block and a half-width one in float32),
    # reductions of at least 256
    "DCGAN-like 4x4 s2 p1": ((3, 64, 4, 5), (64, 48, 4, 4), (2, 2), (1, 1), (1, 1), "pixel rows"),
    "long reduction, many channels": ((1, 200, 3, 40), (200, 48, 4, 4), (2, 2), (1, 1), (1, 1), "pixel rows"),
    "4x4 s2 p0: phases sharing a class": ((2, 64, 5, 6), (64, 20, 4, 4), (2, 2), (0, 0), (1, 1), "pixel rows"),
    "dilated": ((2, 32, 5, 6), (32, 48, 3, 3), (2, 2), (1, 1), (2, 2), "pixel rows"),
    "batch 1, output channels split": ((1, 64, 3, 4), (64, 136, 4, 4), (2, 2), (1, 1), (1, 1), "pixel rows"),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", SUBPIXEL_SOURCE_CASES)
def test_subpixel_sources_match_bitwise(name, dtype):
    """The block source (a zero-padded input copy read at tap offsets, by gather_gemm or by
    pixel_gemm) and the im2col columns give the micro-kernel the same values in the same order:
    equal bits, for any thread count."""
    x_shape, w_shape, stride, pad, dilation, chosen = SUBPIXEL_SOURCE_CASES[name]
    rng = np.random.default_rng(43)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[1]).astype(dtype)
    out_hw = tuple((i - 1) * s - 2 * p + d * (k - 1) + 1
                   for i, s, p, d, k in zip(x_shape[2:], stride, pad, dilation, w_shape[2:]))
    runs = {}
    for nt, source in ((1, "auto"), (2, "auto"), (2, "im2col"), (2, "block"), (2, "pixel rows")):
        out = np.full((x_shape[0], w_shape[1], *out_hw), np.nan, dtype)
        runs[nt, source] = (conv_transpose2d_subpixel(x, w, b, out, *stride, *pad, *dilation, 1, nt, source), out)
    assert runs[1, "auto"][0] == runs[2, "auto"][0] == chosen
    # kernel == stride without padding: every phase reads the input plane itself, as its column
    # matrix (so no block for gather_gemm) or as pixel_gemm's block
    direct_only = w_shape[2:] == stride and pad == (0, 0)
    for source in ("im2col", "block", "pixel rows"):
        assert runs[2, source][0] == ("im2col" if direct_only and source == "block" else source)
        np.testing.assert_array_equal(runs[2, source][1], runs[1, "auto"][1], err_msg=source)
    np.testing.assert_array_equal(runs[1, "auto"][1], runs[2, "auto"][1])
    expected = conv_transpose2d_ref(x, w, b, out_hw, stride, pad, dilation, 1)
    k = x_shape[1] * w_shape[2] * w_shape[3]
    np.testing.assert_allclose(runs[2, "auto"][1], expected, rtol=0,
                               atol=tolerance(dtype, k) * max(1.0, np.abs(expected).max()))
