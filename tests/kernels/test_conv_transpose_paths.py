"""Every algorithm behind conv_transpose.conv_transpose2d against tests/reference.py.

The dispatcher's choice is asserted with ``_path_for``, so each test knows which path it covers.
The sub-pixel kernel also handles what the dispatcher sends to col2im for speed (narrow rows,
stride with dilation): those cases ("subpixel kernel") call it directly.
"""
import numpy as np
import pytest
from kernutil import tolerance
from reference import conv_transpose2d_ref

from convcore._kernels import conv_transpose, conv_transpose_subpixel

DTYPES = [np.float64, np.float32]
PATHS = ["direct", "stride1", "subpixel", "col2im"]
RANDOM_PATHS = PATHS + ["subpixel kernel"]


def out_size(i, k, s, p, d, op):
    return (i - 1) * s - 2 * p + d * (k - 1) + 1 + op


def random_case(rng, path):
    """A random configuration that the dispatcher sends down `path`, or None."""
    groups = int(rng.choice([1, 1, 2, 3]))
    few = path == "direct"
    cig = int(rng.integers(1, 5)) if few else int(rng.integers(5, 12))
    cog = int(rng.integers(1, 5)) if few else int(rng.integers(1, 12))
    one_d = rng.random() < 0.2
    n = int(rng.integers(1, 4))
    h = 1 if one_d else int(rng.integers(1, 10))
    # strided calls go sub-pixel on rows of SUBPIXEL_MIN_WIDTH and more
    wd = int(rng.integers(32, 40)) if path == "subpixel" else int(rng.integers(1, 12))
    kh = 1 if one_d else int(rng.integers(1, 6))
    kw = int(rng.integers(1, 6))
    if path == "stride1":
        sh = sw = 1
    else:
        sh, sw = (int(v) for v in rng.integers(1, 5, size=2))
    dh, dw = (int(v) for v in rng.integers(1, 4, size=2))
    if path == "col2im":  # stride and dilation both above 1 on some axis
        sw, dw = max(sw, 2), max(dw, 2)
    elif path == "subpixel":
        sw = max(sw, 2)
        dh, dw = (dh if sh == 1 else 1), 1
    elif path == "subpixel kernel":  # the dispatcher's col2im cases, run by the sub-pixel kernel
        sw = max(sw, 2)
    if one_d:
        sh = dh = 1
    ph = 0 if one_d else int(rng.integers(0, 7))  # may exceed the kernel: crops real outputs
    pw = int(rng.integers(0, 7))
    oph = 0 if one_d else int(rng.integers(0, max(sh, dh)))
    opw = int(rng.integers(0, max(sw, dw)))
    oh, ow = out_size(h, kh, sh, ph, dh, oph), out_size(wd, kw, sw, pw, dw, opw)
    if oh < 1 or ow < 1:
        return None
    case = dict(x_shape=(n, groups * cig, h, wd), w_shape=(groups * cig, cog, kh, kw), out_hw=(oh, ow),
                stride=(sh, sw), pad=(ph, pw), dilation=(dh, dw), groups=groups, bias=rng.random() < 0.7)
    if sh > oh or sw > ow:  # strides past the output (padding crops it): col2im for every path
        assert path_of(case, np.float64) == "col2im"
        return case if path in ("col2im", "subpixel kernel") else None
    if path != "direct" and oh * ow > conv_transpose.CORRELATION_MAX_EXCESS * sh * h * sw * wd:
        # inputs smaller than the kernel: col2im for every path but the direct loops
        assert path_of(case, np.float64) == "col2im"
        return None if path in ("stride1", "subpixel") else case
    assert path_of(case, np.float64) == ("col2im" if path == "subpixel kernel" else path)
    return case


def path_of(case, dtype):
    return conv_transpose._path_for(case["x_shape"], case["w_shape"], case["out_hw"], case["stride"],
                                    case["dilation"], case["groups"], np.dtype(dtype).itemsize)


def make_case(x, w, out_hw, stride, pad, dilation, groups, bias=True):
    return dict(x_shape=x, w_shape=w, out_hw=out_hw, stride=stride, pad=pad, dilation=dilation,
                groups=groups, bias=bias)


def arrays(case, dtype, rng):
    x = rng.standard_normal(case["x_shape"]).astype(dtype)
    w = rng.standard_normal(case["w_shape"]).astype(dtype)
    cout = case["w_shape"][1] * case["groups"]
    b = rng.standard_normal(cout).astype(dtype) if case["bias"] else np.empty(0, dtype)
    return x, w, b


def run(case, x, w, b, num_threads=2, path=None):
    """The dispatcher's result, or the sub-pixel kernel's for path == "subpixel kernel"."""
    if path == "subpixel kernel":
        kernel = conv_transpose_subpixel.conv_transpose2d_subpixel
    else:
        kernel = conv_transpose.conv_transpose2d
    out = np.full((x.shape[0], w.shape[1] * case["groups"], *case["out_hw"]), np.nan, x.dtype)
    kernel(x, w, b, out, *case["stride"], *case["pad"], *case["dilation"], case["groups"], num_threads)
    return out


def reference(case, x, w, b):
    return conv_transpose2d_ref(x, w, b if b.size else None, case["out_hw"], case["stride"], case["pad"],
                                case["dilation"], case["groups"])


def check(case, dtype, rng, num_threads=2, path=None):
    x, w, b = arrays(case, dtype, rng)
    out = run(case, x, w, b, num_threads, path)
    expected = reference(case, x, w, b)
    k = x.shape[1] // case["groups"] * w.shape[2] * w.shape[3]
    scale = max(1.0, np.abs(expected).max(initial=0))
    assert out.shape == expected.shape
    np.testing.assert_allclose(out, expected, rtol=0, atol=tolerance(dtype, k) * scale)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("path", RANDOM_PATHS)
@pytest.mark.parametrize("seed", range(40))
def test_random_configs_per_path(seed, path, dtype):
    rng = np.random.default_rng([seed, RANDOM_PATHS.index(path)])
    case = None
    while case is None:
        case = random_case(rng, path)
    check(case, dtype, rng, num_threads=1 + seed % 2, path=path)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", range(40))
def test_random_subpixel_sources_same_bits(seed, dtype):
    """Every source of the sub-pixel kernel (im2col, the block read by gather_gemm or by
    pixel_gemm, the input read in place) gives the same bits, on configurations that each
    source alone would rarely meet: phases without taps, dilation, tiny channel counts."""
    rng = np.random.default_rng([seed, 99])
    case = None
    while case is None:
        case = random_case(rng, "subpixel kernel")
    x, w, b = arrays(case, dtype, rng)
    outs = {}
    for source in ("auto", "im2col", "block", "pixel rows"):
        out = np.full((x.shape[0], w.shape[1] * case["groups"], *case["out_hw"]), np.nan, x.dtype)
        used = conv_transpose_subpixel.conv_transpose2d_subpixel(
            x, w, b, out, *case["stride"], *case["pad"], *case["dilation"], case["groups"], 1 + seed % 2, source)
        assert source == "auto" or used in (source, "im2col")
        outs[source] = out
    for source in ("im2col", "block", "pixel rows"):
        np.testing.assert_array_equal(outs[source], outs["auto"], err_msg=source)
    expected = reference(case, x, w, b)
    k = x.shape[1] // case["groups"] * w.shape[2] * w.shape[3]
    np.testing.assert_allclose(outs["auto"], expected, rtol=0,
                               atol=tolerance(dtype, k) * max(1.0, np.abs(expected).max(initial=0)))


EDGE_CASES = {
    # name: (path, (x, w, out_hw, stride, pad, dilation, groups)); out_hw includes output_padding;
    # "subpixel kernel": the dispatcher takes col2im (rows under SUBPIXEL_MIN_WIDTH), the test
    # runs the sub-pixel kernel itself
    "kernel < stride: phases without taps": (
        "subpixel kernel", ((2, 6, 4, 5), (6, 7, 2, 1), (13, 16), (3, 3), (0, 0), (1, 1), 1)),
    "kernel < stride with padding and output padding": (
        "subpixel kernel", ((1, 8, 3, 3), (8, 5, 1, 2), (9, 8), (4, 3), (1, 1), (1, 1), 1)),
    "kernel == stride, no im2col (U-Net)": (
        "subpixel kernel", ((2, 16, 6, 7), (16, 8, 2, 2), (12, 14), (2, 2), (0, 0), (1, 1), 1)),
    "kernel == stride with padding": (
        "subpixel kernel", ((2, 16, 6, 7), (16, 8, 2, 2), (10, 12), (2, 2), (1, 1), (1, 1), 1)),
    "kernel == 2 * stride (audio)": (
        "subpixel kernel", ((2, 12, 1, 30), (12, 6, 1, 8), (1, 120), (1, 4), (0, 2), (1, 1), 1)),
    "DCGAN-like, images batched into one GEMM": (
        "subpixel kernel", ((5, 24, 4, 4), (24, 16, 4, 4), (8, 8), (2, 2), (1, 1), (1, 1), 1)),
    "padding > kernel": (
        "subpixel kernel", ((1, 6, 9, 9), (6, 5, 3, 3), (9, 9), (2, 2), (5, 4), (1, 1), 1)),
    "asymmetric strides": (
        "subpixel kernel", ((2, 8, 7, 9), (8, 6, 3, 5), (14, 13), (2, 1), (1, 2), (1, 1), 1)),
    "stride 1 on one axis, dilation on it": (
        "subpixel kernel", ((2, 8, 7, 9), (8, 6, 3, 3), (15, 11), (2, 1), (0, 2), (1, 2), 1)),
    "1-D, H == 1": ("subpixel", ((3, 10, 1, 40), (10, 7, 1, 5), (1, 120), (1, 3), (0, 1), (1, 1), 1)),
    "N == 1, many channels": ("subpixel kernel", ((1, 96, 5, 6), (96, 80, 3, 3), (11, 13), (2, 2), (0, 0), (1, 1), 1)),
    "groups": ("subpixel kernel", ((2, 18, 5, 6), (18, 4, 3, 3), (12, 14), (2, 2), (0, 0), (1, 1), 3)),
    # one image gives too few tiles: output channels are split in blocks of a multiple of MR
    # (here 16 of 72 with 4 members per class, the last block partial)
    "N == 1, channel blocks, kernel == stride": (
        "subpixel kernel", ((1, 64, 4, 5), (64, 72, 2, 2), (8, 10), (2, 2), (0, 0), (1, 1), 1)),
    "N == 1, channel blocks, groups": (
        "subpixel kernel", ((1, 32, 3, 4), (32, 70, 3, 3), (7, 9), (2, 2), (0, 0), (1, 1), 2)),
    "N == 1, channel blocks, block source": (
        "subpixel", ((1, 16, 3, 40), (16, 75, 3, 3), (5, 79), (2, 2), (1, 1), (1, 1), 1)),
    "stride 1, dilated": ("stride1", ((2, 8, 6, 7), (8, 9, 3, 2), (8, 10), (1, 1), (2, 0), (2, 3), 1)),
    "stride 1, 1x1 kernel is a plain GEMM": ("stride1", ((2, 8, 5, 7), (8, 6, 1, 1), (5, 7), (1, 1), (0, 0), (1, 1), 1)),
    "stride 1, padding crops to one pixel": ("stride1", ((1, 6, 2, 2), (6, 6, 3, 3), (1, 1), (1, 1), (2, 2), (1, 1), 1)),
    "input smaller than the kernel (a latent to a 4x4 map)": (
        "col2im", ((3, 10, 1, 1), (10, 12, 4, 4), (4, 4), (1, 1), (0, 0), (1, 1), 1)),
    "input smaller than the kernel, stride 2": (
        "col2im", ((2, 9, 2, 1), (9, 7, 5, 5), (7, 5), (2, 2), (0, 0), (1, 1), 1)),
    "depthwise with output padding": ("direct", ((2, 6, 9, 9), (6, 1, 3, 3), (18, 18), (2, 2), (1, 1), (1, 1), 6)),
    "depthwise, stride 1, dilated": ("direct", ((2, 5, 6, 7), (5, 1, 3, 3), (10, 11), (1, 1), (0, 0), (2, 2), 5)),
    # rows over 2048 wide: the accumulator holds a few phase rows at a time (ACC_BYTES)
    "depthwise, wide rows in row tiles": ("direct", ((1, 2, 7, 2100), (2, 1, 3, 3), (13, 4199), (2, 2), (1, 1), (1, 1), 2)),
    "few channels, kernel < stride": ("direct", ((1, 4, 3, 4), (4, 3, 2, 1), (9, 13), (3, 4), (0, 0), (1, 1), 2)),
    "all sizes one": ("direct", ((1, 1, 1, 1), (1, 1, 1, 1), (1, 1), (1, 1), (0, 0), (1, 1), 1)),
    "stride and dilation on one axis": ("col2im", ((1, 8, 5, 6), (8, 6, 3, 2), (13, 14), (3, 2), (1, 0), (2, 3), 2)),
    "stride 2, dilation 2: only odd phases have taps": (
        "col2im", ((2, 32, 6, 6), (32, 8, 3, 3), (14, 14), (2, 2), (1, 1), (2, 2), 4)),
    # stride 2 stores both x phases of a row as interleaved vectors; the odd phase has no taps
    # (bias only), and with output padding its row is one longer than the even phase's
    "stride 2, 1x1 kernel, wide rows: odd phases bias only": (
        "subpixel", ((2, 8, 3, 37), (8, 9, 1, 1), (6, 74), (2, 2), (0, 0), (1, 1), 1)),
    "stride 2, 1x1 kernel, padding: even phases bias only": (
        "subpixel", ((1, 8, 3, 45), (8, 9, 1, 1), (5, 88), (2, 2), (1, 1), (1, 1), 1)),
    # strides 4 and 8 interleave all x phases of a row as vectors too; kernel < stride leaves
    # phases without taps, output padding makes some phases a position longer
    "stride 4, kernel 2, wide rows: phases without taps": (
        "subpixel", ((2, 6, 2, 40), (6, 5, 1, 2), (2, 159), (1, 4), (0, 0), (1, 1), 1)),
    "stride 8, kernel 12, wide rows, output padding": (
        "subpixel", ((1, 7, 1, 35), (7, 3, 1, 12), (1, 287), (1, 8), (0, 2), (1, 1), 1)),
    # dilation 3 with stride 4 (output padding 2): phases 0 and 3 share a class, so the x
    # phases come in class order as 0, 3, 1, 2 and the interleave must put them back
    "stride 4, dilation 3, wide rows: phases out of class order": (
        "subpixel", ((2, 5, 1, 40), (5, 3, 1, 4), (1, 168), (1, 4), (0, 0), (1, 3), 1)),
    "no phase has taps: bias only": ("subpixel kernel", ((2, 6, 11, 2), (6, 7, 2, 1), (26, 1), (3, 3), (3, 2), (1, 1), 1)),
    "few channels, stride and dilation": ("direct", ((2, 3, 5, 6), (3, 2, 3, 2), (15, 14), (3, 2), (1, 0), (2, 3), 1)),
    # rows of DILATED_SUBPIXEL_MIN_WIDTH and more: stride with dilation goes sub-pixel (block source)
    "stride 2, dilation 2, wide rows": (
        "subpixel", ((2, 32, 6, 32), (32, 8, 3, 3), (14, 66), (2, 2), (1, 1), (2, 2), 4)),
    "stride 3, dilation 2 on one axis, wide rows": (
        "subpixel", ((1, 8, 5, 40), (8, 6, 3, 2), (13, 81), (3, 2), (1, 0), (2, 3), 2)),
    "stride and dilation, wide rows, long reduction": (
        "col2im", ((1, 400, 2, 32), (400, 5, 3, 3), (5, 67), (2, 2), (1, 1), (2, 2), 1)),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", EDGE_CASES)
def test_edge_cases(name, dtype):
    path, spec = EDGE_CASES[name]
    case = make_case(*spec)
    assert path_of(case, dtype) == ("col2im" if path == "subpixel kernel" else path)
    check(case, dtype, np.random.default_rng(7), path=path)


def test_large_packed_weights_take_col2im():
    # 1024 x 1024 x 3 x 3 float32 weights are 36 MiB: repacking them per call would exceed the budget
    assert conv_transpose._path_for((1, 1024, 4, 4), (1024, 1024, 3, 3), (7, 7), (2, 2), (1, 1), 1, 4) == "col2im"
    assert conv_transpose._path_for((1, 1024, 4, 4), (1024, 512, 3, 3), (7, 7), (2, 2), (1, 1), 1, 4) == "subpixel"


# big enough (> 2**21 multiply-adds) that every path starts a thread team
THREADED = {
    "direct": ((8, 32, 32, 32), (32, 1, 3, 3), (64, 64), (2, 2), (1, 1), (1, 1), 32),
    "stride1": ((2, 32, 20, 20), (32, 24, 3, 3), (22, 22), (1, 1), (0, 0), (1, 1), 1),
    "subpixel": ((3, 32, 6, 32), (32, 24, 4, 4), (12, 64), (2, 2), (1, 1), (1, 1), 1),
    "subpixel, channel blocks": ((1, 64, 2, 32), (64, 100, 4, 4), (4, 64), (2, 2), (1, 1), (1, 1), 1),
    "col2im": ((2, 32, 16, 16), (32, 16, 3, 3), (34, 33), (2, 2), (1, 1), (2, 2), 2),
    # planes under MIN_TILE pixels: several images per GEMM, their columns side by side
    "col2im, images side by side": ((16, 64, 3, 3), (64, 64, 4, 4), (6, 6), (1, 1), (0, 0), (1, 1), 1),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", THREADED)
def test_same_bits_for_any_thread_count(name, dtype):
    path = name.split(",")[0]
    case = make_case(*THREADED[name])
    assert path_of(case, dtype) == path
    x, w, b = arrays(case, dtype, np.random.default_rng(3))
    outs = [run(case, x, w, b, num_threads=t, path=path) for t in (1, 2, 3)]
    for out in outs[1:]:
        np.testing.assert_array_equal(out, outs[0])
    check(case, dtype, np.random.default_rng(3), path=path)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("path", PATHS)
def test_nan_and_inf_propagate_like_the_reference(path, dtype):
    """Non-finite inputs reach every output they touch, also through zero weights (0 * inf = nan)."""
    case = make_case(*THREADED[path])
    rng = np.random.default_rng(4)
    x, w, b = arrays(case, dtype, rng)
    x.flat[rng.choice(x.size, 3, replace=False)] = [np.nan, np.inf, -np.inf]
    w.flat[rng.choice(w.size, w.size // 4, replace=False)] = 0
    with np.errstate(invalid="ignore"):
        expected = reference(case, x, w, b)
    out = run(case, x, w, b, path=path)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(expected))
    np.testing.assert_array_equal(np.isposinf(out), np.isposinf(expected))
    np.testing.assert_array_equal(np.isneginf(out), np.isneginf(expected))
    assert np.isnan(out).any() and np.isinf(out).any()
    finite = np.isfinite(expected)
    np.testing.assert_allclose(out[finite], expected[finite], rtol=0, atol=tolerance(dtype, 32 * 16) * 100)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["DCGAN-like, images batched into one GEMM", "kernel == stride, no im2col (U-Net)",
                                  "kernel < stride: phases without taps", "1-D, H == 1"])
def test_subpixel_tile_size_changes_only_rounding(name, dtype):
    """Tiny tiles cut rows, images and phase grids mid-way; results agree to rounding."""
    case = make_case(*EDGE_CASES[name][1])
    x, w, b = arrays(case, dtype, np.random.default_rng(5))
    default = run(case, x, w, b, path="subpixel kernel")
    old = conv_transpose_subpixel.set_tile_bytes(1)
    try:
        small = run(case, x, w, b, path="subpixel kernel")
        check(case, dtype, np.random.default_rng(5), path="subpixel kernel")
    finally:
        conv_transpose_subpixel.set_tile_bytes(old)
    k = x.shape[1] * w.shape[2] * w.shape[3]
    np.testing.assert_allclose(small, default, rtol=0, atol=tolerance(dtype, k) * np.abs(default).max())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", range(12))
def test_stride1_above_the_conv_route_threshold(seed, dtype):
    """Stride-1 calls with enough work run as conv2d with the flipped kernel when the padding
    fits (p <= d*(k-1)), and as the in-module correlation otherwise: both match the reference,
    with the same bits for any thread count."""
    rng = np.random.default_rng(1000 + seed)
    groups = int(rng.choice([1, 2, 4]))
    cig, cog = (int(v) for v in rng.integers(8, 24, size=2))
    kh, kw = (int(v) for v in rng.integers(2, 6, size=2))
    dh, dw = (int(v) for v in rng.integers(1, 3, size=2))
    ph, pw = (int(rng.integers(0, d * (k - 1) + 3)) for d, k in ((dh, kh), (dw, kw)))
    oph, opw = (int(rng.integers(0, d)) for d in (dh, dw))
    n, h, wd = 4, int(rng.integers(24, 48)), int(rng.integers(24, 48))
    oh, ow = out_size(h, kh, 1, ph, dh, oph), out_size(wd, kw, 1, pw, dw, opw)
    if oh < 1 or ow < 1:
        pytest.skip("empty output")
    x = rng.standard_normal((n, groups * cig, h, wd)).astype(dtype)
    w = rng.standard_normal((groups * cig, cog, kh, kw)).astype(dtype)
    b = rng.standard_normal(groups * cog).astype(dtype)
    assert x.size * cog * kh * kw >= conv_transpose.CONV_ROUTE_MIN_MACS
    outs = []
    for nt in (1, 2):
        out = np.full((n, groups * cog, oh, ow), np.nan, dtype)
        conv_transpose.conv_transpose2d(x, w, b, out, 1, 1, ph, pw, dh, dw, groups, nt)
        outs.append(out)
    assert np.array_equal(outs[0], outs[1])
    ref = conv_transpose2d_ref(x, w, b, (oh, ow), (1, 1), (ph, pw), (dh, dw), groups)
    scale = max(1.0, np.abs(ref).max())
    assert np.abs(outs[0] - ref).max() <= tolerance(dtype, cig * kh * kw) * scale
