"""Every conv2d dispatcher path against tests/reference.py, and the paths against each other.

The dispatcher (convcore._kernels.conv._path_for) picks "direct", "gemm", "blocked" or "im2col" from shapes;
each test asserts the path it means to exercise, so a changed rule cannot silently skip a path.
"""
import numpy as np
import pytest
import kernutil
from kernutil import call, make, path_of, tolerance
from reference import conv2d_ref

from convcore._kernels import conv
from convcore._kernels.conv_blocked import MR, NR, _mode_for, conv2d_blocked
from convcore._kernels.conv_direct import conv2d_direct

DTYPES = [np.float64, np.float32]


def out_size(i, k, s, p, d):
    return (i + 2 * p - d * (k - 1) - 1) // s + 1


def check(spec, dtype, rng, bias=True, num_threads=2):
    return kernutil.check(conv.conv2d, spec, dtype, rng, bias, num_threads)


def random_spec(rng, path):
    """A random configuration that the dispatcher sends down `path` (None: retry)."""
    groups = int(rng.choice([1, 2, 3, 5]))
    n = int(rng.integers(1, 4))
    if path == "direct":
        cog = int(rng.integers(1, 4))
        cig = int(rng.choice([1, 1, 2, 3, 8]))
    elif path == "im2col":  # a reduction past BLOCKED_MAX_K (4096)
        cog = int(rng.integers(4, 9))
        cig = int(rng.integers(1370, 1500))
    else:
        # around the micro-kernel's MR channel block: partial, whole and several blocks
        cog = int(rng.integers(4, 2 * MR + 3))
        cig = int(rng.integers(1, 6))
    one_d = rng.random() < 0.2
    h = 1 if one_d else int(rng.integers(1, 14))
    wd = int(rng.integers(1, 30))
    if path == "gemm":
        kh = kw = sh = sw = dh = dw = 1
        ph = pw = 0
        oh, ow = h, wd
    else:
        kh = 1 if one_d else int(rng.integers(1, 6 if path != "im2col" else 3))
        kw = int(rng.integers(1, 8 if path != "im2col" else 4))
        # half the direct cases unstrided, to reach 3 channels per group there too
        if path == "direct" and rng.random() < 0.5:
            sh = sw = 1
        else:
            sh, sw = (int(v) for v in rng.integers(1, 5, size=2))
        dh, dw = (int(v) for v in rng.integers(1, 4, size=2))
        ph = 0 if one_d else int(rng.integers(0, 5))
        pw = int(rng.integers(0, 5))
        # extra end padding (asymmetric, as 'same' produces) grows the output
        oh = out_size(h + int(rng.integers(0, 3)), kh, sh, ph, dh)
        ow = out_size(wd + int(rng.integers(0, 3)), kw, sw, pw, dw)
        if oh < 1 or ow < 1:
            return None
    spec = ((n, groups * cig, h, wd), (groups * cog, cig, kh, kw), (oh, ow), (sh, sw), (ph, pw), (dh, dw), groups)
    return spec if path_of(spec) == path else None


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("path", ["direct", "gemm", "blocked", "im2col"])
@pytest.mark.parametrize("seed", range(60))
def test_random_configs_per_path(seed, path, dtype):
    rng = np.random.default_rng(seed)
    spec = None
    while spec is None:
        spec = random_spec(rng, path)
    check(spec, dtype, rng, bias=seed % 3 != 0, num_threads=1 + seed % 2)


EDGE_CASES = {
    # name: ((x, w, out_hw, stride, pad, dilation, groups), path)
    "depthwise 3x3 pad 1": (((2, 8, 12, 11), (8, 1, 3, 3), (12, 11), (1, 1), (1, 1), (1, 1), 8), "direct"),
    "depthwise strided": (((2, 6, 13, 17), (6, 1, 3, 3), (7, 9), (2, 2), (1, 1), (1, 1), 6), "direct"),
    "depthwise stride > kernel": (((1, 4, 17, 19), (4, 1, 2, 3), (4, 4), (5, 5), (1, 1), (1, 1), 4), "direct"),
    "depthwise 7x7 dilated": (((1, 3, 20, 21), (3, 1, 7, 7), (14, 15), (1, 1), (3, 3), (2, 2), 3), "direct"),
    "channel multiplier 2": (((2, 4, 9, 10), (8, 1, 5, 5), (9, 10), (1, 1), (2, 2), (1, 1), 4), "direct"),
    "few channels per group": (((1, 12, 8, 9), (6, 4, 3, 3), (8, 9), (1, 1), (1, 1), (1, 1), 3), "direct"),
    "one output map, many inputs": (((2, 40, 7, 8), (1, 40, 3, 3), (5, 6), (1, 1), (0, 0), (1, 1), 1), "direct"),
    "padding >= kernel": (((1, 2, 3, 4), (2, 1, 2, 2), (8, 9), (1, 1), (3, 3), (1, 1), 2), "direct"),
    "kernel == padded input": (((1, 3, 4, 5), (3, 1, 6, 7), (1, 1), (1, 1), (1, 1), (1, 1), 3), "direct"),
    "asymmetric end padding": (((1, 3, 6, 6), (3, 1, 3, 3), (7, 8), (1, 1), (1, 1), (1, 1), 3), "direct"),
    "H = 1": (((3, 4, 1, 50), (4, 1, 1, 5), (1, 25), (1, 2), (0, 2), (1, 3), 4), "direct"),
    "N = 1, wide rows, column tiles": (((1, 2, 3, 2500), (2, 1, 3, 3), (3, 2500), (1, 1), (1, 1), (1, 1), 2), "direct"),
    "tall planes, row tiles, row stride": (((1, 2, 300, 40), (2, 1, 4, 3), (99, 40), (3, 1), (2, 1), (1, 1), 2),
                                           "direct"),
    # stride-2 gathers by vector shuffles: rows of 33 outputs whose last tap reads the last
    # input element (the vector loop must stop short of reading past it)
    "depthwise stride 2, rows to the end of the input": (
        ((2, 3, 5, 67), (3, 1, 3, 3), (2, 33), (2, 2), (0, 0), (1, 1), 3), "direct"),
    "stride 2, rows to the end of the input": (((2, 3, 5, 67), (6, 3, 3, 3), (2, 33), (2, 2), (0, 0), (1, 1), 1),
                                              "blocked"),
    "1x1 depthwise strided": (((2, 3, 9, 9), (3, 1, 1, 1), (5, 5), (2, 2), (0, 0), (1, 1), 3), "blocked"),
    "multiplier 3 strided": (((2, 3, 9, 9), (9, 1, 3, 3), (5, 5), (2, 2), (1, 1), (1, 1), 3), "blocked"),
    "multiplier 2 strided": (((2, 3, 9, 9), (6, 1, 3, 3), (5, 5), (2, 2), (1, 1), (1, 1), 3), "direct"),
    "multiplier 3 dilated": (((2, 3, 9, 9), (9, 1, 3, 3), (9, 9), (1, 1), (2, 2), (2, 2), 3), "direct"),
    "1x1 plain": (((2, 16, 5, 7), (12, 16, 1, 1), (5, 7), (1, 1), (0, 0), (1, 1), 1), "gemm"),
    "1x1 grouped": (((2, 16, 5, 7), (12, 8, 1, 1), (5, 7), (1, 1), (0, 0), (1, 1), 2), "gemm"),
    "1x1 strided (gather + GEMM)": (((2, 8, 9, 9), (8, 8, 1, 1), (5, 5), (2, 2), (0, 0), (1, 1), 1), "blocked"),
    "1x1 padded": (((1, 8, 4, 4), (8, 8, 1, 1), (6, 6), (1, 1), (1, 1), (1, 1), 1), "blocked"),
    "1x1 end padding only": (((1, 8, 4, 4), (8, 8, 1, 1), (5, 4), (1, 1), (0, 0), (1, 1), 1), "blocked"),
    "general padding >= kernel": (((1, 4, 3, 3), (8, 4, 2, 2), (8, 8), (1, 1), (3, 3), (1, 1), 1), "blocked"),
    "general stride > kernel": (((2, 4, 11, 13), (8, 4, 2, 2), (3, 3), (4, 5), (0, 1), (1, 1), 1), "blocked"),
    "odd seed shape, smaller": (((2, 16, 10, 20), (33, 16, 3, 5), (5, 20), (2, 1), (4, 2), (3, 1), 1), "blocked"),
    "huge dilation leaves direct": (((1, 2, 5, 300), (2, 1, 1, 2), (1, 40), (1, 1), (0, 0), (1, 260), 2), "blocked"),
    "audio stem, K = 10": (((2, 1, 1, 300), (40, 1, 1, 10), (1, 59), (1, 5), (0, 0), (1, 1), 1), "blocked"),
    "one pixel, K = 1": (((1, 2, 1, 1), (10, 1, 1, 1), (1, 1), (2, 2), (0, 0), (1, 1), 2), "blocked"),
    "pixel tiles, several per image": (((1, 3, 70, 90), (17, 3, 7, 7), (35, 45), (2, 2), (3, 3), (1, 1), 1), "blocked"),
    "grouped, 4 channels per group": (((2, 32, 9, 11), (32, 4, 3, 3), (9, 11), (1, 1), (1, 1), (1, 1), 8), "blocked"),
    "K = BLOCKED_MAX_K": (((1, 256, 6, 7), (9, 256, 1, 16), (6, 4), (1, 1), (0, 6), (1, 1), 1), "blocked"),
    "K past BLOCKED_MAX_K": (((1, 256, 6, 7), (9, 256, 1, 17), (6, 4), (1, 1), (0, 7), (1, 1), 1), "im2col"),
    "im2col strided, padded": (((2, 460, 9, 10), (12, 460, 3, 3), (5, 5), (2, 2), (1, 1), (1, 1), 1), "im2col"),
    "blocked, long reduction, im2col source": (((2, 100, 9, 10), (12, 100, 3, 3), (9, 10), (1, 1), (1, 1), (1, 1), 1),
                                               "blocked"),
    "block, one row per item": (((4, 4, 1, 200), (12, 2, 1, 5), (1, 100), (1, 2), (0, 2), (1, 1), 2), "blocked"),
    "block, no discarded columns": (((2, 5, 12, 13), (9, 5, 3, 1), (12, 13), (1, 1), (1, 0), (1, 1), 1), "blocked"),
    "block, row and column phases": (((3, 6, 17, 19), (10, 3, 3, 3), (9, 10), (2, 2), (1, 1), (1, 1), 2), "blocked"),
    # output channels that fill pixel_gemm's vectors (48 = 32 + 16 in float32), K = 288
    # (and enough pixels per call, 1024, to pay for packing the weights)
    "block pixels": (((2, 32, 24, 23), (48, 32, 3, 3), (24, 23), (1, 1), (1, 1), (1, 1), 1), "blocked"),
    "block pixels, strided and grouped": (((2, 64, 33, 33), (96, 32, 3, 3), (16, 17), (2, 2), (0, 1), (1, 1), 2),
                                          "blocked"),
    # a stem-like 7x7 kernel: pixel_gemm at K = 98, below PIXEL_MIN_K (PIXEL_MIN_TAPS)
    "block pixels, 7x7 over 2 channels": (((2, 2, 64, 64), (32, 2, 7, 7), (32, 32), (2, 2), (3, 3), (1, 1), 1),
                                          "blocked"),
    # one tile: output channels split into blocks of 128 (128 + 72 and 128 + 128 + 44), each redoing
    # its tile's im2col block
    "blocked, channel blocks": (((1, 80, 6, 6), (200, 80, 3, 3), (6, 6), (1, 1), (1, 1), (1, 1), 1), "blocked"),
    "blocked, 1x1 strided, channel blocks": (((1, 8, 5, 5), (300, 8, 1, 1), (3, 3), (2, 2), (0, 0), (1, 1), 1),
                                             "blocked"),
    # one tile: blocks of 256 channels (256 + 44), packed GEMM rows from the middle of a group
    "im2col, channel blocks": (((1, 460, 5, 5), (300, 460, 3, 3), (5, 5), (1, 1), (1, 1), (1, 1), 1), "im2col"),
    "im2col, channel blocks, groups": (((1, 920, 4, 4), (600, 460, 3, 3), (4, 4), (1, 1), (1, 1), (1, 1), 2),
                                       "im2col"),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", EDGE_CASES)
def test_edge_cases(name, dtype):
    spec, path = EDGE_CASES[name]
    assert path_of(spec) == path
    check(spec, dtype, np.random.default_rng(3))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["depthwise 3x3 pad 1", "few channels per group", "tall planes, row tiles, row stride",
                                  "N = 1, wide rows, column tiles", "channel multiplier 2"])
def test_direct_agrees_with_blocked(name, dtype):
    """The direct path and the general path compute the same sums up to rounding."""
    spec, _ = EDGE_CASES[name]
    x, w, b = make(np.random.default_rng(4), spec, dtype)
    direct = call(conv.conv2d, spec, x, w, b)
    # cog > DIRECT_MAX_COG sends the same per-channel work down blocked: repeat each weight 4 times
    w4 = np.repeat(w, 4, axis=0)
    general_spec = (spec[0], w4.shape, *spec[2:])
    assert path_of(general_spec) == "blocked"
    general = call(conv.conv2d, general_spec, x, w4, np.repeat(b, 4))[:, ::4]
    k = w.shape[1] * w.shape[2] * w.shape[3]
    np.testing.assert_allclose(direct, general, rtol=0, atol=tolerance(dtype, k) * np.abs(general).max())


THREADED = {
    # big enough (> 2**21 multiply-adds) that every path starts a thread team
    "direct": ((3, 32, 40, 40), (32, 1, 3, 3), (40, 40), (1, 1), (1, 1), (1, 1), 32),
    "direct strided": ((2, 16, 61, 67), (32, 1, 5, 5), (30, 33), (2, 2), (2, 2), (1, 1), 16),
    "gemm": ((2, 64, 40, 40), (64, 64, 1, 1), (40, 40), (1, 1), (0, 0), (1, 1), 1),
    "blocked": ((3, 32, 24, 24), (48, 16, 3, 3), (22, 22), (1, 1), (1, 1), (2, 2), 2),
    "blocked grouped strided": ((6, 64, 31, 29), (64, 4, 3, 3), (16, 15), (2, 2), (1, 1), (1, 1), 16),
    "blocked audio (im2col source)": ((1, 1, 1, 40000), (64, 1, 1, 10), (1, 7999), (1, 5), (0, 0), (1, 1), 1),
    "im2col": ((2, 460, 12, 12), (40, 460, 3, 3), (12, 12), (1, 1), (1, 1), (1, 1), 1),
    "blocked channel blocks": ((1, 80, 12, 12), (272, 80, 3, 3), (12, 12), (1, 1), (1, 1), (1, 1), 1),
    "blocked pixels": ((2, 32, 20, 20), (64, 32, 3, 3), (20, 20), (1, 1), (1, 1), (1, 1), 1),
    "im2col channel blocks (tiles across images)": ((3, 460, 5, 5), (300, 460, 3, 3), (5, 5), (1, 1), (1, 1),
                                                    (1, 1), 1),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", THREADED)
def test_same_bits_for_any_thread_count(name, dtype):
    spec = THREADED[name]
    assert path_of(spec) == name.split()[0]
    x, w, b = make(np.random.default_rng(5), spec, dtype)
    outs = [call(conv.conv2d, spec, x, w, b, num_threads=t) for t in (1, 2, 3, 4)]
    for out in outs[1:]:
        np.testing.assert_array_equal(out, outs[0])


@pytest.mark.parametrize("prefill", [np.nan, np.inf, 7.0])
@pytest.mark.parametrize("name", THREADED)
def test_out_fully_overwritten(name, prefill):
    """Whatever `out` held beforehand is gone, with and without bias."""
    spec = THREADED[name]
    rng = np.random.default_rng(6)
    for bias in (True, False):
        x, w, b = make(rng, spec, np.float32, bias)
        out = call(conv.conv2d, spec, x, w, b, prefill=prefill)
        assert np.isfinite(out).all()
        np.testing.assert_array_equal(out, call(conv.conv2d, spec, x, w, b, prefill=0.0))


@pytest.mark.parametrize("path", ["direct", "gemm", "blocked", "im2col"])
def test_nan_and_inf_propagate(path):
    """No shortcut skips zero weights or zero inputs: 0 * NaN and 0 * Inf stay NaN."""
    spec = next(s for s, p in EDGE_CASES.values() if p == path)
    x, w, b = make(np.random.default_rng(8), spec, np.float64)
    x[0, 0, 0, 0] = np.nan
    x[-1, -1, -1, -1] = np.inf
    w[:] = 0  # zero weights times NaN/Inf inputs
    out = call(conv.conv2d, spec, x, w, b)
    expected = conv2d_ref(x, w, b, *spec[2:])
    np.testing.assert_array_equal(np.isnan(out), np.isnan(expected))
    assert np.isnan(out).any()
    finite = np.isfinite(expected)
    np.testing.assert_allclose(out[finite], expected[finite], rtol=0, atol=1e-12)


@pytest.mark.parametrize("path", ["direct", "blocked", "im2col"])
def test_inf_weight_times_padding_is_nan(path):
    """Padding is read as stored zeros on every path, so 0 * Inf in the border gives NaN."""
    spec = next(s for s, p in EDGE_CASES.values() if p == path and s[4] != (0, 0))
    x, w, b = make(np.random.default_rng(9), spec, np.float64)
    w[0, 0, 0, 0] = np.inf
    out = call(conv.conv2d, spec, x, w, b)
    expected = conv2d_ref(x, w, b, *spec[2:])
    np.testing.assert_array_equal(np.isnan(out), np.isnan(expected))
    np.testing.assert_array_equal(np.isposinf(out), np.isposinf(expected))
    assert np.isnan(out).any()


def test_direct_entry_point_matches_dispatcher():
    """conv_direct.conv2d_direct is what the dispatcher calls for "direct" shapes."""
    spec, _ = EDGE_CASES["depthwise strided"]
    x, w, b = make(np.random.default_rng(10), spec, np.float32)
    np.testing.assert_array_equal(call(conv2d_direct, spec, x, w, b), call(conv.conv2d, spec, x, w, b))


def test_blocked_entry_point_matches_dispatcher():
    """conv_blocked.conv2d_blocked is what the dispatcher calls for "blocked" shapes."""
    spec, _ = EDGE_CASES["grouped, 4 channels per group"]
    x, w, b = make(np.random.default_rng(11), spec, np.float32)
    np.testing.assert_array_equal(call(conv2d_blocked, spec, x, w, b), call(conv.conv2d, spec, x, w, b))


@pytest.mark.parametrize("dtype", DTYPES)
def test_blocked_agrees_with_gemm_past_its_range(dtype):
    """Called directly on a K > BLOCKED_MAX_K shape, blocked matches the BLAS path it yields to."""
    spec, path = EDGE_CASES["im2col strided, padded"]
    assert path == "im2col" and path_of(spec) == "im2col"
    x, w, b = make(np.random.default_rng(12), spec, dtype)
    general = call(conv.conv2d, spec, x, w, b)
    k = w.shape[1] * w.shape[2] * w.shape[3]
    np.testing.assert_allclose(call(conv2d_blocked, spec, x, w, b), general, rtol=0,
                               atol=tolerance(dtype, k) * np.abs(general).max())


@pytest.mark.parametrize("dtype", DTYPES)
def test_blocked_block_edges(dtype):
    """Channel counts and pixel counts on both sides of the MR x NR register block."""
    rng = np.random.default_rng(13)
    nr = NR[np.dtype(dtype).name]
    for cog in (1, 2, 3, 4, 5, MR - 1, MR, MR + 1, MR + 2, MR + 3, 2 * MR + 1):
        for pixels in (1, nr - 1, nr, nr + 1, 2 * nr + 3):
            spec = ((1, 6, 1, pixels + 2), (2 * cog, 3, 1, 3), (1, pixels), (1, 1), (0, 0), (1, 1), 2)
            if path_of(spec) == "blocked":
                check(spec, dtype, rng)
            else:  # few channels per group go direct: run the blocked kernel itself
                x, w, b = make(rng, spec, dtype)
                expected = conv2d_ref(x, w, b, *spec[2:])
                np.testing.assert_allclose(call(conv2d_blocked, spec, x, w, b), expected, rtol=0,
                                           atol=tolerance(dtype, 9) * max(1.0, np.abs(expected).max()))


def mode_of(spec, dtype):
    x, w, out_hw, stride, _, dilation, groups = spec
    return _mode_for(x, w, (x[0], w[0], *out_hw), *stride, *dilation, groups, np.dtype(dtype).itemsize)


BLOCKED_CASES = [name for name, (_, path) in EDGE_CASES.items() if path == "blocked"]


def test_blocked_cases_reach_every_source():
    modes = {mode_of(EDGE_CASES[name][0], np.float32) for name in BLOCKED_CASES}
    assert modes == {"block", "block pixels", "im2col"}
    assert mode_of(EDGE_CASES["block pixels, strided and grouped"][0], np.float64) == "block pixels"
    for dtype in DTYPES:
        assert mode_of(EDGE_CASES["block pixels, 7x7 over 2 channels"][0], dtype) == "block pixels"
    # the same kernel over 3x3 taps and K below PIXEL_MIN_K stays with gather_gemm
    assert mode_of(((2, 10, 64, 64), (32, 10, 3, 3), (32, 32), (2, 2), (1, 1), (1, 1), 1), np.float32) == "block"
    assert mode_of(THREADED["blocked"], np.float64) == "block"
    assert mode_of(THREADED["blocked audio (im2col source)"], np.float32) == "im2col"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", BLOCKED_CASES)
def test_blocked_sources_agree_bitwise(name, dtype):
    """The phase-split block (read by gather_gemm or pixel_gemm) and im2col feed the micro-kernel
    the same values in the same order."""
    spec, _ = EDGE_CASES[name]
    x, w, b = make(np.random.default_rng(14), spec, dtype)
    auto = call(conv2d_blocked, spec, x, w, b)
    chosen = mode_of(spec, dtype)
    for source in ("im2col", "block", "block pixels"):
        used = []
        out = call(lambda *a: used.append(conv2d_blocked(*a, source=source)), spec, x, w, b)
        # a block source runs where its block fits (pixel_gemm's also on long reductions and few rows)
        assert used[0] in (source, "im2col") and (used[0] == source or source != chosen)
        np.testing.assert_array_equal(out, auto, err_msg=source)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", range(30))
def test_blocked_sources_agree_random(seed, dtype):
    rng = np.random.default_rng(100 + seed)
    spec = None
    while spec is None:
        spec = random_spec(rng, "blocked")
    x, w, b = make(rng, spec, dtype)
    out = call(conv2d_blocked, spec, x, w, b, num_threads=1 + seed % 2)
    for source in ("im2col", "block", "block pixels"):
        np.testing.assert_array_equal(out, call(lambda *a: conv2d_blocked(*a, source=source), spec, x, w, b))
    expected = conv2d_ref(x, w, b, *spec[2:])
    k = w.shape[1] * w.shape[2] * w.shape[3]
    np.testing.assert_allclose(out, expected, rtol=0, atol=tolerance(dtype, k) * max(1.0, np.abs(expected).max()))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("extra", [1, 2, 3, 4])
def test_blocked_remainder_variants_same_bits(extra, dtype):
    """A last channel block of 1..4 channels runs a narrower micro-kernel variant: it must give
    the same bits as the full-width kernel for the same weights (channel MR + i repeats channel i)."""
    spec = ((2, 3, 9, 40), (MR + extra, 3, 3, 3), (9, 40), (1, 1), (1, 1), (1, 1), 1)
    assert path_of(spec) == "blocked"
    x, w, b = make(np.random.default_rng(15), spec, dtype)
    w[MR:], b[MR:] = w[:extra], b[:extra]
    out = call(conv.conv2d, spec, x, w, b)
    np.testing.assert_array_equal(out[:, MR:], out[:, :extra])
