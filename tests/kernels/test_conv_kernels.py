"""The general CPU kernels against tests/reference.py, called with the kernel contract's arguments."""
import numpy as np
import pytest
from kernutil import tolerance
from reference import conv2d_ref, conv_transpose2d_ref

from convcore._kernels import conv, conv_transpose

DTYPES = [np.float64, np.float32]


def conv_out_size(i, k, s, p, d):
    return (i + 2 * p - d * (k - 1) - 1) // s + 1


def random_case(rng, transposed):
    """One random configuration; sizes kept small so a few hundred run in seconds."""
    groups = int(rng.choice([1, 1, 2, 3]))
    n = int(rng.integers(1, 4))
    cig = int(rng.integers(1, 5))
    cog = int(rng.integers(1, 5))
    one_d = rng.random() < 0.2
    h = 1 if one_d else int(rng.integers(1, 12))
    wd = int(rng.integers(1, 14))
    kh = 1 if one_d else int(rng.integers(1, 5))
    kw = int(rng.integers(1, 5))
    sh, sw = (int(v) for v in rng.integers(1, 4, size=2))
    dh, dw = (int(v) for v in rng.integers(1, 3, size=2))
    if one_d:
        sh = dh = 1
    ph = 0 if one_d else int(rng.integers(0, 4))
    pw = int(rng.integers(0, 4))
    if transposed:
        # out size from the formula plus output_padding < max(stride, dilation)
        oh = (h - 1) * sh - 2 * ph + dh * (kh - 1) + 1 + int(rng.integers(0, max(sh, dh)))
        ow = (wd - 1) * sw - 2 * pw + dw * (kw - 1) + 1 + int(rng.integers(0, max(sw, dw)))
        if oh < 1 or ow < 1:
            return None
        x_shape = (n, groups * cig, h, wd)
        w_shape = (groups * cig, cog, kh, kw)
    else:
        # extra end padding (asymmetric, as 'same' produces) grows the output
        oh = conv_out_size(h + int(rng.integers(0, 3)), kh, sh, ph, dh)
        ow = conv_out_size(wd + int(rng.integers(0, 3)), kw, sw, pw, dw)
        if oh < 1 or ow < 1:
            return None
        x_shape = (n, groups * cig, h, wd)
        w_shape = (groups * cog, cig, kh, kw)
    return dict(x_shape=x_shape, w_shape=w_shape, out_hw=(oh, ow), stride=(sh, sw), pad=(ph, pw),
                dilation=(dh, dw), groups=groups, bias=rng.random() < 0.6, cout=groups * cog)


def run(kernel, case, dtype, rng, num_threads=2, readonly=False):
    x = rng.standard_normal(case["x_shape"]).astype(dtype)
    w = rng.standard_normal(case["w_shape"]).astype(dtype)
    b = rng.standard_normal(case["cout"]).astype(dtype) if case["bias"] else np.empty(0, dtype)
    if readonly:
        for a in (x, w, b):
            a.flags.writeable = False
    out = np.full((x.shape[0], case["cout"], *case["out_hw"]), np.nan, dtype)
    kernel(x, w, b, out, *case["stride"], *case["pad"], *case["dilation"], case["groups"], num_threads)
    return x, w, b, out


def check(kernel, ref, case, dtype, rng, **kw):
    x, w, b, out = run(kernel, case, dtype, rng, **kw)
    expected = ref(x, w, b if b.size else None, case["out_hw"], case["stride"], case["pad"],
                   case["dilation"], case["groups"])
    k = w.shape[1] * w.shape[2] * w.shape[3] if kernel is conv.conv2d else x.shape[1] * w.shape[2] * w.shape[3]
    scale = max(1.0, np.abs(expected).max(initial=0))
    assert out.shape == expected.shape
    np.testing.assert_allclose(out, expected, rtol=0, atol=tolerance(dtype, k) * scale)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", range(150))
def test_conv2d_random(seed, dtype):
    rng = np.random.default_rng(seed)
    case = None
    while case is None:
        case = random_case(rng, transposed=False)
    check(conv.conv2d, conv2d_ref, case, dtype, rng, readonly=seed % 3 == 0, num_threads=1 + seed % 2)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", range(150))
def test_conv_transpose2d_random(seed, dtype):
    rng = np.random.default_rng(1000 + seed)
    case = None
    while case is None:
        case = random_case(rng, transposed=True)
    check(conv_transpose.conv_transpose2d, conv_transpose2d_ref, case, dtype, rng,
          readonly=seed % 3 == 0, num_threads=1 + seed % 2)


CONV_CASES = {
    # name: (x, w, out_hw, stride, pad, dilation, groups)
    "1x1 plain gemm": ((2, 8, 5, 7), (6, 8, 1, 1), (5, 7), (1, 1), (0, 0), (1, 1), 1),
    "1x1 grouped": ((2, 8, 5, 7), (6, 4, 1, 1), (5, 7), (1, 1), (0, 0), (1, 1), 2),
    "1x1 strided": ((1, 3, 6, 6), (2, 3, 1, 1), (3, 3), (2, 2), (0, 0), (1, 1), 1),
    "1x1 padded": ((1, 3, 4, 4), (2, 3, 1, 1), (6, 6), (1, 1), (1, 1), (1, 1), 1),
    "1x1 end padding only": ((1, 3, 4, 4), (2, 3, 1, 1), (5, 4), (1, 1), (0, 0), (1, 1), 1),
    "kernel bigger than input": ((2, 2, 2, 3), (3, 2, 5, 6), (2, 2), (1, 1), (2, 2), (1, 1), 1),
    "all sizes one": ((1, 1, 1, 1), (1, 1, 1, 1), (1, 1), (1, 1), (0, 0), (1, 1), 1),
    "1-D": ((3, 4, 1, 40), (5, 4, 1, 3), (1, 19), (1, 2), (0, 1), (1, 3), 1),
    "depthwise": ((2, 6, 9, 9), (6, 1, 3, 3), (9, 9), (1, 1), (1, 1), (1, 1), 6),
    "many channels, several tiles": ((1, 96, 30, 30), (16, 96, 3, 3), (30, 30), (1, 1), (1, 1), (1, 1), 1),
    "wide rows split mid-row": ((1, 64, 3, 700), (4, 64, 3, 3), (1, 698), (1, 1), (0, 0), (1, 1), 1),
    # big enough (> 2**21 multiply-adds) that the kernels start a thread team
    "grouped dilated, threaded": ((3, 32, 24, 24), (48, 16, 3, 3), (22, 22), (1, 1), (1, 1), (2, 2), 2),
    "1x1, threaded": ((2, 64, 40, 40), (64, 64, 1, 1), (40, 40), (1, 1), (0, 0), (1, 1), 1),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", CONV_CASES)
def test_conv2d_edge_cases(name, dtype):
    x, w, out_hw, stride, pad, dilation, groups = CONV_CASES[name]
    case = dict(x_shape=x, w_shape=w, out_hw=out_hw, stride=stride, pad=pad, dilation=dilation,
                groups=groups, bias=True, cout=w[0])
    check(conv.conv2d, conv2d_ref, case, dtype, np.random.default_rng(7))


TRANSPOSED_CASES = {
    # name: (x, w, out_hw, stride, pad, dilation, groups); out_hw includes any output_padding
    "seed shape, smaller": ((2, 16, 10, 20), (16, 33, 3, 3), (21, 41), (2, 2), (0, 0), (1, 1), 1),
    "dilated and strided": ((1, 4, 5, 6), (4, 3, 3, 2), (13, 14), (3, 2), (1, 0), (2, 3), 2),
    "padding crops everything but one": ((1, 2, 2, 2), (2, 2, 3, 3), (1, 1), (1, 1), (2, 2), (1, 1), 1),
    "output padding beyond the scatter": ((1, 2, 3, 3), (2, 2, 1, 1), (7, 8), (3, 4), (0, 0), (1, 1), 1),
    "1x1": ((2, 8, 5, 7), (8, 6, 1, 1), (5, 7), (1, 1), (0, 0), (1, 1), 1),
    "all sizes one": ((1, 1, 1, 1), (1, 1, 1, 1), (1, 1), (1, 1), (0, 0), (1, 1), 1),
    "1-D": ((3, 4, 1, 40), (4, 5, 1, 3), (1, 84), (1, 2), (0, 1), (1, 3), 1),
    "depthwise": ((2, 6, 9, 9), (6, 1, 3, 3), (17, 17), (2, 2), (1, 1), (1, 1), 6),
    "many channels, several tiles": ((1, 64, 40, 40), (64, 24, 4, 4), (80, 80), (2, 2), (1, 1), (1, 1), 1),
    "grouped dilated, threaded": ((2, 64, 16, 16), (64, 16, 3, 3), (34, 33), (2, 2), (1, 1), (2, 2), 2),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", TRANSPOSED_CASES)
def test_conv_transpose2d_edge_cases(name, dtype):
    x, w, out_hw, stride, pad, dilation, groups = TRANSPOSED_CASES[name]
    case = dict(x_shape=x, w_shape=w, out_hw=out_hw, stride=stride, pad=pad, dilation=dilation,
                groups=groups, bias=True, cout=w[1] * groups)
    check(conv_transpose.conv_transpose2d, conv_transpose2d_ref, case, dtype, np.random.default_rng(7))


def invariance_cases():
    conv_cases = [("conv", CONV_CASES[k]) for k in ("many channels, several tiles", "grouped dilated, threaded",
                                                     "1x1, threaded", "1x1 grouped")]
    t_cases = [("transposed", TRANSPOSED_CASES[k]) for k in ("many channels, several tiles", "grouped dilated, threaded",
                                                             "seed shape, smaller")]
    return conv_cases + t_cases


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind,spec", invariance_cases())
def test_same_bits_for_any_thread_count(kind, spec, dtype):
    x, w, out_hw, stride, pad, dilation, groups = spec
    transposed = kind == "transposed"
    kernel = conv_transpose.conv_transpose2d if transposed else conv.conv2d
    case = dict(x_shape=x, w_shape=w, out_hw=out_hw, stride=stride, pad=pad, dilation=dilation,
                groups=groups, bias=True, cout=w[1] * groups if transposed else w[0])
    outs = [run(kernel, case, dtype, np.random.default_rng(3), num_threads=t)[3] for t in (1, 2, 3)]
    for out in outs[1:]:
        np.testing.assert_array_equal(out, outs[0])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("module", [conv, conv_transpose])
def test_tile_size_changes_only_rounding(module, dtype):
    """Tiny tiles exercise tile edges mid-row; results agree with the default tiling to rounding."""
    if module is conv:
        x, w, out_hw, stride, pad, dilation, groups = CONV_CASES["wide rows split mid-row"]
        kernel, ref, cout = conv.conv2d, conv2d_ref, w[0]
    else:
        x, w, out_hw, stride, pad, dilation, groups = TRANSPOSED_CASES["seed shape, smaller"]
        kernel, ref, cout = conv_transpose.conv_transpose2d, conv_transpose2d_ref, w[1] * groups
    case = dict(x_shape=x, w_shape=w, out_hw=out_hw, stride=stride, pad=pad, dilation=dilation,
                groups=groups, bias=True, cout=cout)
    old = module.set_tile_bytes(1)
    try:
        check(kernel, ref, case, dtype, np.random.default_rng(5))
        small = run(kernel, case, dtype, np.random.default_rng(5))[3]
    finally:
        module.set_tile_bytes(old)
    default = run(kernel, case, dtype, np.random.default_rng(5))[3]
    np.testing.assert_allclose(small, default, rtol=0, atol=tolerance(dtype, 64 * 9) * np.abs(default).max())


def test_adjoint():
    """<conv(x), y> == <x, conv_transpose(y)> with the same weight and arguments."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 6, 11, 13))
    w = rng.standard_normal((4, 3, 3, 2))
    args = (2, 3, 1, 1, 2, 1, 2)  # sh, sw, ph, pw, dh, dw, groups
    y = np.empty((2, 4, 5, 5))
    conv.conv2d(x, w, np.empty(0), y, *args, 2)
    v = rng.standard_normal(y.shape)
    xt = np.empty_like(x)
    conv_transpose.conv_transpose2d(v, w, np.empty(0), xt, *args, 2)
    assert np.isclose(np.vdot(y, v), np.vdot(x, xt), rtol=1e-12)
