"""The small-call kernel (convcore._kernels.conv_small) for conv2d and conv_transpose2d against
tests/reference.py, and both dispatchers' routing to it ("small" from each ``_path_for``)."""
import numpy as np
import pytest
from kernutil import tolerance
from reference import conv2d_ref, conv_transpose2d_ref

from convcore._kernels import conv, conv_small, conv_transpose

DTYPES = [np.float64, np.float32]
# The small-call bound counts vector steps; this build's vectors may be narrower than AVX-512's
# (64 bytes), which the edge cases below were sized for: their bound is scaled up by as much.
WIDTH_SCALE = 64 // conv_small.VECTOR_BYTES


@pytest.fixture
def avx512_bound():
    """The small-call bound an AVX-512 build applies to these shapes (4096 steps of 64 bytes)."""
    old = conv_small.set_max_steps(4096 * WIDTH_SCALE)
    yield
    conv_small.set_max_steps(old)


def out_size(i, k, s, p, d, transposed, extra):
    """extra: end padding (conv2d) or output padding (conv_transpose2d)."""
    if transposed:
        return (i - 1) * s - 2 * p + d * (k - 1) + 1 + extra
    return (i + 2 * p + extra - d * (k - 1) - 1) // s + 1


def path_of(case, dtype):
    transposed, x, w, out_hw, stride, pad, dilation, groups = case
    itemsize = np.dtype(dtype).itemsize
    if transposed:
        return conv_transpose._path_for(x, w, out_hw, stride, dilation, groups, itemsize)
    return conv._path_for(x, w, (x[0], w[0], *out_hw), *stride, *pad, *dilation, groups, itemsize)


def random_case(rng):
    """Any conv2d or conv_transpose2d configuration, small or not (None: an empty output)."""
    transposed = bool(rng.random() < 0.5)
    groups = int(rng.choice([1, 1, 2, 3]))
    cig, cog = (int(v) for v in rng.integers(1, 40, size=2))
    one_d = rng.random() < 0.3
    n = int(rng.integers(1, 11))
    h = 1 if one_d else int(rng.integers(1, 6))
    wd = int(rng.integers(1, 9))
    kh = 1 if one_d else int(rng.integers(1, 4))
    kw = int(rng.integers(1, 5))
    sh, sw = (1, int(rng.integers(1, 4))) if one_d else (int(v) for v in rng.integers(1, 4, size=2))
    dh, dw = (1, int(rng.integers(1, 3))) if one_d else (int(v) for v in rng.integers(1, 3, size=2))
    ph = 0 if one_d else int(rng.integers(0, 4))
    pw = int(rng.integers(0, 4))
    # conv2d: extra end padding (as 'same' gives); conv_transpose2d: output padding
    eh = 0 if one_d else int(rng.integers(0, max(sh, dh) if transposed else 3))
    ew = int(rng.integers(0, max(sw, dw) if transposed else 3))
    oh = out_size(h, kh, sh, ph, dh, transposed, eh)
    ow = out_size(wd, kw, sw, pw, dw, transposed, ew)
    if oh < 1 or ow < 1:
        return None
    cin, cout = groups * cig, groups * cog
    w = (cin, cog, kh, kw) if transposed else (cout, cig, kh, kw)
    return transposed, (n, cin, h, wd), w, (oh, ow), (sh, sw), (ph, pw), (dh, dw), groups


def arrays(case, dtype, rng, bias=True):
    transposed, x_shape, w_shape, _, _, _, _, groups = case
    cout = w_shape[1] * groups if transposed else w_shape[0]
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(cout).astype(dtype) if bias else np.empty(0, dtype)
    return x, w, b


def run(kernel, case, x, w, b, *extra):
    transposed, _, _, out_hw, stride, pad, dilation, groups = case
    cout = w.shape[1] * groups if transposed else w.shape[0]
    out = np.full((x.shape[0], cout, *out_hw), np.nan, x.dtype)
    kernel(x, w, b, out, *stride, *pad, *dilation, groups, *extra)
    return out


def reference(case, x, w, b):
    transposed, _, _, out_hw, stride, pad, dilation, groups = case
    ref = conv_transpose2d_ref if transposed else conv2d_ref
    return ref(x, w, b if b.size else None, out_hw, stride, pad, dilation, groups)


def check(case, dtype, rng, bias=True):
    """The small kernel against the reference; the dispatcher gives its bits, for any thread count."""
    transposed = case[0]
    x, w, b = arrays(case, dtype, rng, bias)
    got = run(conv_small.conv2d_small, case, x, w, b, transposed)
    expected = reference(case, x, w, b)
    k = (x.shape[1] // case[-1]) * w.shape[2] * w.shape[3]
    scale = max(1.0, np.abs(expected).max(initial=0))
    np.testing.assert_allclose(got, expected, rtol=0, atol=tolerance(dtype, k) * scale, err_msg=str(case))
    dispatcher = conv_transpose.conv_transpose2d if transposed else conv.conv2d
    for num_threads in (1, 2):
        np.testing.assert_array_equal(run(dispatcher, case, x, w, b, num_threads), got, err_msg=str(case))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", range(80))
def test_random_small_configs(seed, dtype):
    rng = np.random.default_rng([seed, 7])
    case = None
    while case is None or path_of(case, dtype) != "small":
        case = random_case(rng)
    check(case, dtype, rng, bias=seed % 3 != 0)


EDGE_CASES = {
    # name: (transposed, x, w, out_hw, stride, pad, dilation, groups)
    "the issue's tiny 1-D transposed conv": (True, (10, 32, 1, 2), (32, 16, 1, 2), (1, 3), (1, 1), (0, 0), (1, 1), 1),
    "tiny 1-D conv": (False, (5, 16, 1, 4), (32, 16, 1, 2), (1, 3), (1, 1), (0, 0), (1, 1), 1),
    "one pixel, one input channel": (False, (1, 1, 1, 1), (4, 1, 1, 1), (1, 1), (1, 1), (0, 0), (1, 1), 1),
    # output channels around the vector width (16 float32 / 8 float64 lanes)
    "C_out/groups 17": (False, (2, 3, 4, 4), (17, 3, 2, 2), (3, 3), (1, 1), (0, 0), (1, 1), 1),
    "C_out/groups 15, grouped": (False, (1, 4, 2, 3), (30, 2, 3, 3), (2, 3), (1, 1), (1, 1), (1, 1), 2),
    "C_out/groups 8, transposed": (True, (2, 3, 2, 3), (3, 8, 2, 2), (3, 4), (1, 1), (0, 0), (1, 1), 1),
    "C_out/groups 9, transposed, grouped": (True, (1, 6, 1, 2), (6, 9, 3, 3), (3, 4), (1, 1), (0, 0), (1, 1), 2),
    # conv2d: padding at least the kernel, end padding, stride past the kernel
    "padding >= kernel": (False, (1, 2, 2, 2), (4, 2, 2, 2), (5, 5), (1, 1), (2, 2), (1, 1), 1),
    "end padding only": (False, (1, 3, 3, 3), (5, 3, 2, 2), (3, 4), (1, 1), (0, 0), (1, 1), 1),
    "stride > kernel, dilated": (False, (2, 2, 7, 9), (4, 2, 2, 2), (2, 2), (3, 4), (0, 1), (2, 3), 1),
    # conv_transpose2d: outputs no input lands on (bias only), padding cropping real outputs,
    # output padding, dilation with stride
    "stride > kernel: bias-only outputs": (True, (1, 3, 2, 3), (3, 4, 1, 2), (4, 8), (3, 3), (0, 0), (1, 1), 1),
    "padding crops outputs": (True, (2, 2, 3, 3), (2, 4, 3, 3), (3, 3), (1, 1), (2, 2), (1, 1), 1),
    "output padding": (True, (1, 4, 2, 3), (4, 4, 3, 3), (6, 8), (2, 2), (1, 1), (1, 1), 1),
    "stride and dilation": (True, (1, 2, 3, 2), (2, 5, 2, 3), (7, 8), (2, 3), (0, 1), (3, 2), 1),
    "one input channel per group, transposed": (True, (1, 2, 2, 2), (2, 4, 3, 3), (3, 3), (2, 2), (1, 1), (1, 1), 2),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", EDGE_CASES)
def test_edge_cases(name, dtype, avx512_bound):
    case = EDGE_CASES[name]
    assert path_of(case, dtype) == "small"
    check(case, dtype, np.random.default_rng(5))
    check(case, dtype, np.random.default_rng(6), bias=False)


def test_bound_switches_paths():
    """small_enough: at the bound the call is small, past it (one more batch image) it is not."""
    bound = conv_small.set_max_steps(4096 * WIDTH_SCALE)
    try:
        # conv2d, float32: one vector of 16 channels per pixel (WIDTH_SCALE narrower ones); 4 taps
        # x 8 pixels x (24 channels + VISIT_STEPS) = 1024 steps per image and vector
        case = (False, (4, 24, 3, 5), (16, 24, 2, 2), (2, 4), (1, 1), (0, 0), (1, 1), 1)
        assert path_of(case, np.float32) == "small"
        assert path_of((False, (5,) + case[1][1:]) + case[2:], np.float32) != "small"
        # float64 has half the lanes: two vectors per pixel
        assert path_of((False, (2,) + case[1][1:]) + case[2:], np.float64) == "small"
        assert path_of((False, (3,) + case[1][1:]) + case[2:], np.float64) != "small"
        # weights alone past the bound: 4097 weights (times WIDTH_SCALE)
        c = 4096 * WIDTH_SCALE + 1
        assert path_of((False, (1, c, 1, 1), (1, c, 1, 1), (1, 1), (1, 1), (0, 0), (1, 1), 1), np.float64) != "small"
        # fewer than SMALL_MIN_COG output channels per group: the direct loops
        assert path_of((False, (1, 3, 4, 4), (3, 1, 3, 3), (4, 4), (1, 1), (1, 1), (1, 1), 3), np.float32) == "direct"
        conv_small.set_max_steps(-1)
        assert path_of(case, np.float32) != "small"
    finally:
        conv_small.set_max_steps(bound)


def test_nonfinite_weights_follow_torch_products():
    """conv2d multiplies padding taps too (0 * Inf = NaN, as the GEMM paths and torch do);
    conv_transpose2d forms only the products of input positions that land (as torch's col2im)."""
    x = np.ones((1, 1, 1, 2))
    w = np.array([[[[np.inf, 1.0]]]])
    # conv2d, padding 1: output 0 reads (pad, x0): Inf * 0 = NaN; outputs 1, 2 read x with Inf
    case = (False, (1, 1, 1, 2), (1, 1, 1, 2), (1, 3), (1, 1), (0, 1), (1, 1), 1)
    got = run(conv_small.conv2d_small, case, x, w, np.empty(0), False)
    assert np.isnan(got[0, 0, 0, 0]) and np.isinf(got[0, 0, 0, 1:]).all()
    # conv_transpose2d, stride 3: output 1 and 4 get only the finite tap, 0 and 3 the Inf one,
    # 2 (no input lands) the bias alone
    case = (True, (1, 1, 1, 2), (1, 1, 1, 2), (1, 6), (1, 3), (0, 0), (1, 1), 1)
    got = run(conv_small.conv2d_small, case, x, w, np.array([0.5]), True)
    np.testing.assert_array_equal(got[0, 0, 0], [np.inf, 1.5, 0.5, np.inf, 1.5, 0.5])
