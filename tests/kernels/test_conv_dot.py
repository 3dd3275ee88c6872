"""The dot-product path (convcore._kernels.conv_dot) against tests/reference.py, its edge cases
(reduction tails, partial row and pixel blocks, chunks, groups), thread invariance, non-finite
values, and the dispatcher's routing to it ("dot" from conv._path_for)."""
import numpy as np
import pytest
import kernutil
from kernutil import call, make, path_of
from reference import conv2d_ref

from convcore._kernels import conv, conv_dot
from convcore._kernels.conv_dot import conv2d_dot

DTYPES = [np.float64, np.float32]


def out_size(i, k, s, p, d):
    return (i + 2 * p - d * (k - 1) - 1) // s + 1


def check(spec, dtype, rng, bias=True, num_threads=2):
    return kernutil.check(conv2d_dot, spec, dtype, rng, bias, num_threads)


def random_spec(rng):
    """A random conv2d configuration the dispatcher sends down "dot" in float32 (None: retry)."""
    groups = int(rng.choice([1, 1, 2, 3]))
    n = int(rng.integers(1, 4))
    kh, kw = (int(v) for v in rng.integers(1, 4, size=2))
    cig = int(rng.integers(4096 // (kh * kw) + 1, 4400 // (kh * kw) + 2))
    cog = int(rng.integers(4, 40))
    h, wd = (int(v) for v in rng.integers(1, 9, size=2))
    sh, sw, dh, dw = (int(v) for v in rng.integers(1, 3, size=4))
    ph, pw = (int(v) for v in rng.integers(0, 3, size=2))
    oh, ow = out_size(h, kh, sh, ph, dh), out_size(wd, kw, sw, pw, dw)
    if oh < 1 or ow < 1:
        return None
    spec = ((n, groups * cig, h, wd), (groups * cog, cig, kh, kw), (oh, ow), (sh, sw), (ph, pw), (dh, dw), groups)
    return spec if path_of(spec, np.float32) == "dot" else None


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", range(40))
def test_random_configs(seed, dtype):
    rng = np.random.default_rng([seed, 11])
    spec = None
    while spec is None:
        spec = random_spec(rng)
    x, w, b, got = check(spec, dtype, rng, bias=seed % 3 != 0, num_threads=1 + seed % 3)
    # the dispatcher gives the kernel's bits (float64 takes the GEMM paths)
    if dtype == np.float32:
        np.testing.assert_array_equal(call(conv.conv2d, spec, x, w, b), got)


EDGE_CASES = {
    # name: (x, w, out_hw, stride, pad, dilation, groups); the kernel takes any K, rows and pixels
    "ResNet stage 4, batch 1": ((1, 512, 7, 7), (512, 512, 3, 3), (7, 7), (1, 1), (1, 1), (1, 1), 1),
    "K a multiple of the vector": ((1, 64, 3, 3), (8, 64, 1, 1), (3, 3), (1, 1), (0, 0), (1, 1), 1),
    "K below one vector": ((2, 1, 4, 4), (5, 1, 2, 2), (3, 3), (1, 1), (0, 0), (1, 1), 1),
    "K = 1": ((1, 1, 2, 3), (6, 1, 1, 1), (2, 3), (1, 1), (0, 0), (1, 1), 1),
    "one output channel": ((1, 40, 3, 3), (1, 40, 3, 3), (3, 3), (1, 1), (1, 1), (1, 1), 1),
    "rows past a block, pixels past a block": ((1, 37, 3, 3), (5, 37, 3, 3), (1, 7), (1, 1), (0, 3), (1, 1), 1),
    "one pixel": ((1, 100, 3, 3), (9, 100, 3, 3), (1, 1), (1, 1), (0, 0), (1, 1), 1),
    "groups, rows past an item": ((2, 66, 4, 4), (54, 33, 3, 3), (4, 4), (1, 1), (1, 1), (1, 1), 2),
    "strided, dilated, padded past the kernel": ((1, 70, 9, 8), (12, 70, 3, 2), (5, 6), (2, 2), (3, 3), (2, 3), 1),
    "end padding (as 'same' gives)": ((1, 90, 5, 5), (10, 90, 2, 2), (5, 5), (1, 1), (0, 0), (1, 1), 1),
    # more pixels than one reduction chunk's worth: K is cut into chunks (DK_BYTES)
    "reduction chunks": ((2, 700, 7, 7), (20, 700, 3, 3), (7, 7), (1, 1), (1, 1), (1, 1), 1),
    "padding only, every tap outside": ((1, 60, 2, 2), (6, 60, 3, 3), (2, 2), (4, 4), (3, 3), (1, 1), 1),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", EDGE_CASES)
def test_edge_cases(name, dtype):
    check(EDGE_CASES[name], dtype, np.random.default_rng(5))
    check(EDGE_CASES[name], dtype, np.random.default_rng(6), bias=False)


@pytest.mark.parametrize("dtype", DTYPES)
def test_same_bits_for_any_thread_count(dtype):
    spec = EDGE_CASES["groups, rows past an item"]
    x, w, b = make(np.random.default_rng(7), spec, dtype)
    outs = [call(conv2d_dot, spec, x, w, b, t) for t in (1, 2, 3, 4)]
    for out in outs[1:]:
        np.testing.assert_array_equal(out, outs[0])


def test_nan_and_inf_propagate():
    """Padding taps are multiplied as stored zeros (0 * Inf is NaN), as in the GEMM paths."""
    spec = EDGE_CASES["strided, dilated, padded past the kernel"]
    x, w, b = make(np.random.default_rng(8), spec, np.float64)
    x[0, 3, 2, 2] = np.nan
    w[4, 1, 0, 0] = np.inf
    out = call(conv2d_dot, spec, x, w, b)
    expected = conv2d_ref(x, w, b, *spec[2:])
    np.testing.assert_array_equal(np.isnan(out), np.isnan(expected))
    assert np.isnan(out).any() and not np.isnan(out).all()
    finite = ~np.isnan(expected)
    np.testing.assert_allclose(out[finite], expected[finite], rtol=1e-12)


@pytest.mark.parametrize("prefill", [np.nan, 7.0])
def test_out_fully_overwritten(prefill):
    spec = EDGE_CASES["groups, rows past an item"]
    for bias in (True, False):
        x, w, b = make(np.random.default_rng(9), spec, np.float32, bias)
        out = call(conv2d_dot, spec, x, w, b, prefill=prefill)
        np.testing.assert_array_equal(out, call(conv2d_dot, spec, x, w, b, prefill=0.0))


ROUTES = {
    # spec: the path the dispatcher takes in float32
    "3x3 over 512 channels, batch 1": (EDGE_CASES["ResNet stage 4, batch 1"], "dot"),
    "1x1 strided (a gather), batch 1": (((1, 4608, 14, 14), (64, 4608, 1, 1), (7, 7), (2, 2), (0, 0), (1, 1), 1),
                                        "dot"),
    # no gather: the input plane is the column matrix
    "1x1 plain stays gemm": (((1, 8192, 7, 7), (64, 8192, 1, 1), (7, 7), (1, 1), (0, 0), (1, 1), 1), "gemm"),
    "K one past BLOCKED_MAX_K": (((1, 4097, 4, 4), (8, 4097, 1, 1), (4, 4), (1, 1), (1, 1), (1, 1), 1), "dot"),
    "K = BLOCKED_MAX_K": (((1, 4096, 4, 4), (8, 4096, 1, 1), (4, 4), (1, 1), (1, 1), (1, 1), 1), "blocked"),
    "DOT_MAX_PIXELS pixels": (((2, 512, 8, 8), (8, 512, 3, 3), (8, 8), (1, 1), (1, 1), (1, 1), 1), "dot"),
    "one pixel more": (((1, 2048, 129, 1), (8, 2048, 3, 1), (129, 1), (1, 1), (1, 0), (1, 1), 1), "im2col"),
    "depthwise stays direct": (((1, 6000, 5, 5), (6000, 1, 3, 3), (5, 5), (1, 1), (1, 1), (1, 1), 6000), "direct"),
}


@pytest.mark.parametrize("name", ROUTES)
def test_dispatch(name):
    spec, path = ROUTES[name]
    assert path_of(spec, np.float32) == path


def test_float64_takes_the_gemm_paths():
    assert path_of(EDGE_CASES["ResNet stage 4, batch 1"], np.float64) == "im2col"


def test_switch_turns_the_path_off():
    spec = EDGE_CASES["ResNet stage 4, batch 1"]
    old = conv_dot.set_max_pixels(0)
    try:
        assert path_of(spec, np.float32) == "im2col"
    finally:
        conv_dot.set_max_pixels(old)
    assert path_of(spec, np.float32) == "dot"
