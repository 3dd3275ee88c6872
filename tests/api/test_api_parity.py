"""Values and shapes of the four functions against torch.nn.functional over random valid calls."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import convcore
from apiutil import NDIM, OPS, TRANSPOSED, assert_matches_torch, convcore_call, torch_call

DTYPES = (np.float32, np.float64)


@st.composite
def valid_calls(draw, op):
    """(x, w, b, kwargs) for a call that torch accepts; sizes chosen from the constraints up."""
    nd, transposed = NDIM[op], TRANSPOSED[op]
    ints = lambda lo, hi: draw(st.lists(st.integers(lo, hi), min_size=nd, max_size=nd))  # noqa: E731
    groups = draw(st.sampled_from([1, 1, 1, 2, 3]))
    cig = draw(st.integers(1, 4))
    cog = draw(st.integers(1, 4))
    kernel, dilation, stride = ints(1, 5), ints(1, 3), ints(1, 3)

    def spelled(values):  # torch takes an int, a tuple or a list
        form = draw(st.sampled_from(["tuple", "list", "int"]))
        if form == "int" and len(set(values)) == 1:
            return values[0]
        return list(values) if form == "list" else tuple(values)

    kwargs = {"groups": groups, "dilation": spelled(dilation)}
    dilated = [d * (k - 1) + 1 for k, d in zip(kernel, dilation)]
    if transposed:
        padding = ints(0, 3)
        output_padding = [draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation)]
        # (in - 1)*s - 2p + dilated + op >= 1
        min_in = [max(1, 1 + -(-(2 * p - dk - op + 1) // s))
                  for p, dk, op, s in zip(padding, dilated, output_padding, stride)]
        kwargs.update(stride=spelled(stride), padding=spelled(padding), output_padding=spelled(output_padding))
    else:
        mode = draw(st.sampled_from(["zeros", "zeros", "reflect", "replicate", "circular"]))
        kind = draw(st.sampled_from(["int", "int", "int", "same", "valid"]))
        if kind == "same":
            stride = [1] * nd
            pads = [(dk - 1) // 2 for dk in dilated], [dk - 1 - (dk - 1) // 2 for dk in dilated]
            padding = "same"
        elif kind == "valid":
            pads = [0] * nd, [0] * nd
            padding = "valid"
        else:
            padding = ints(0, 3)
            pads = padding, padding
        before, after = pads
        # reflect needs pad < size, circular pad <= size; the padded size must hold the kernel
        margin = {"reflect": 1, "circular": 0}.get(mode, None)
        min_in = [max(1, dk - p0 - p1, *(() if margin is None else (p0 + margin, p1 + margin)))
                  for dk, p0, p1 in zip(dilated, before, after)]
        kwargs.update(stride=spelled(stride), padding=padding if isinstance(padding, str) else spelled(padding))
        if mode != "zeros":
            kwargs["padding_mode"] = mode
    spatial = [m + draw(st.integers(0, 6)) for m in min_in]
    batch = draw(st.sampled_from([None, 0, 1, 2, 3]))  # None: unbatched
    cin = cig * groups
    lead = (cin,) if batch is None else (batch, cin)
    wshape = (cin, cog, *kernel) if transposed else (cog * groups, cig, *kernel)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal(lead + tuple(spatial))
    w = rng.standard_normal(wshape)
    b = rng.standard_normal(cog * groups) if draw(st.booleans()) else None
    return x, w, b, kwargs


def _check(op, call, dtype):
    x, w, b, kwargs = call
    b = None if b is None else b.astype(dtype)
    assert_matches_torch(op, x.astype(dtype), w.astype(dtype), b, **kwargs)


@pytest.mark.parametrize("dtype", DTYPES)
@given(call=valid_calls("conv1d"))
def test_conv1d_matches_torch(call, dtype):
    _check("conv1d", call, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@given(call=valid_calls("conv2d"))
def test_conv2d_matches_torch(call, dtype):
    _check("conv2d", call, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@given(call=valid_calls("conv_transpose1d"))
def test_conv_transpose1d_matches_torch(call, dtype):
    _check("conv_transpose1d", call, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@given(call=valid_calls("conv_transpose2d"))
def test_conv_transpose2d_matches_torch(call, dtype):
    _check("conv_transpose2d", call, dtype)


# Cases a random search may miss: (op, x shape, w shape, bias?, kwargs)
EDGE_CASES = [
    ("conv2d", (2, 3, 7, 8), (4, 3, 4, 2), True, dict(padding="same")),  # even kernel: extra pad at the end
    ("conv2d", (1, 2, 9, 9), (3, 2, 2, 4), False, dict(padding="same", dilation=(3, 1))),
    ("conv2d", (1, 2, 9, 9), (3, 2, 4, 4), True, dict(padding="same", dilation=2, padding_mode="reflect")),
    ("conv2d", (1, 2, 9, 9), (3, 2, 4, 3), True, dict(padding="same", padding_mode="circular")),
    ("conv1d", (2, 3, 10), (2, 3, 6), True, dict(padding="same", dilation=3, padding_mode="replicate")),
    ("conv1d", (2, 3, 10), (2, 3, 4), True, dict(padding="same")),
    ("conv2d", (2, 3, 7, 8), (4, 3, 3, 3), True, dict(padding="valid", stride=2)),
    ("conv2d", (2, 6, 9, 9), (6, 1, 3, 3), True, dict(padding=1, groups=6)),  # depthwise
    ("conv2d", (2, 6, 9, 9), (12, 1, 5, 5), False, dict(padding=2, stride=2, groups=6)),  # depthwise x2
    ("conv1d", (2, 8, 20), (8, 1, 5), True, dict(padding=2, groups=8)),
    ("conv_transpose2d", (2, 6, 5, 5), (6, 1, 3, 3), True, dict(stride=2, padding=1, groups=6)),
    ("conv_transpose1d", (2, 4, 9), (4, 2, 4), True, dict(stride=3, groups=4, output_padding=2)),
    ("conv2d", (3, 16, 10, 12), (8, 16, 1, 1), True, {}),  # 1x1: plain GEMM
    ("conv2d", (3, 16, 10, 12), (8, 16, 1, 1), False, dict(stride=2)),
    ("conv_transpose2d", (3, 16, 10, 12), (16, 8, 1, 1), True, {}),
    ("conv_transpose2d", (3, 16, 5, 6), (16, 8, 1, 1), True, dict(stride=2, output_padding=1)),
    ("conv2d", (1, 2, 3, 3), (2, 2, 7, 7), True, dict(padding=3)),  # kernel larger than the input
    ("conv2d", (1, 2, 4, 5), (2, 2, 9, 11), True, dict(padding=(4, 5))),
    ("conv1d", (1, 2, 2), (2, 2, 15), True, dict(padding=7)),
    ("conv_transpose2d", (1, 2, 3, 3), (2, 3, 9, 9), True, dict(padding=4)),
    ("conv2d", (0, 3, 5, 5), (4, 3, 3, 3), True, {}),  # empty batch
    ("conv_transpose2d", (0, 3, 5, 5), (3, 4, 3, 3), True, dict(stride=2)),
    # no input channels: torch returns an empty result with no channels (and drops the bias)
    ("conv2d", (2, 0, 5, 5), (4, 0, 3, 3), True, dict(padding=1)),
    ("conv1d", (0, 6), (4, 0, 3), True, {}),
    ("conv2d", (3, 5, 5), (4, 3, 3, 3), False, dict(padding=1)),  # unbatched
    ("conv1d", (3, 5), (4, 3, 2), True, dict(stride=2)),
    ("conv_transpose2d", (3, 5, 5), (3, 4, 3, 3), True, dict(stride=2, output_padding=1)),
    ("conv_transpose1d", (3, 5), (3, 4, 3), False, dict(dilation=2)),
    ("conv2d", (2, 4, 11, 13), (6, 2, 3, 2), True, dict(stride=(2, 3), padding=(1, 2), dilation=(2, 1), groups=2)),
    ("conv_transpose2d", (2, 4, 5, 6), (4, 3, 3, 2), True,
     dict(stride=(2, 3), padding=(1, 0), output_padding=(1, 2), dilation=(2, 1), groups=2)),
    ("conv_transpose2d", (2, 4, 5, 6), (4, 3, 3, 3), True, dict(stride=3, dilation=2, output_padding=2)),
    ("conv_transpose2d", (1, 2, 4, 4), (2, 3, 2, 2), True, dict(stride=5)),  # stride > kernel: gaps
    ("conv2d", (1, 2, 3, 4), (3, 2, 1, 1), True, dict(stride=(5, 7))),  # stride beyond the input
    ("conv2d", (1, 2, 3, 4), (3, 2, 3, 4), True, {}),  # kernel == input: one output pixel
    ("conv1d", (2, 3, 5), (2, 3, 2), True, dict(dilation=4)),
    ("conv2d", (1, 2, 3, 3), (3, 2, 2, 2), True, dict(dilation=5, padding=2)),
    ("conv_transpose2d", (1, 2, 3, 4), (2, 3, 2, 3), True, dict(stride=(4, 1), dilation=(1, 5), padding=(2, 4))),
    ("conv_transpose1d", (1, 2, 1), (2, 3, 1), True, dict(stride=7, output_padding=6)),
    ("conv2d", (1, 2, 4, 3), (3, 2, 4, 2), True, dict(padding="same", padding_mode="circular")),  # pad == size
    ("conv2d", (1, 2, 1, 1), (3, 2, 1, 1), True, dict(padding=2, padding_mode="replicate")),
    # torch.nn.ConvNd pads with F.pad, where a negative padding crops (zeros mode rejects it)
    ("conv2d", (1, 2, 7, 7), (3, 2, 3, 3), True, dict(padding=(1, -1), padding_mode="reflect")),
    ("conv2d", (1, 2, 7, 8), (3, 2, 3, 3), True, dict(padding=-1, padding_mode="circular")),
    ("conv1d", (2, 2, 9), (3, 2, 3), True, dict(padding=-2, padding_mode="replicate")),
    ("conv2d", (1, 2, 3, 4), (3, 2, 3, 3), True, dict(padding=(2, 3), padding_mode="reflect")),
    ("conv2d", (1, 2, 3, 4), (3, 2, 3, 3), True, dict(padding=(3, 4), padding_mode="circular")),
    # several kernel tiles, threads and BLAS calls
    ("conv2d", (2, 64, 56, 56), (64, 64, 3, 3), True, dict(padding=1)),
    ("conv2d", (1, 64, 56, 56), (32, 64, 1, 1), True, {}),
    ("conv2d", (1, 64, 56, 56), (64, 16, 3, 3), True, dict(padding=1, stride=2, groups=4)),
    ("conv2d", (1, 64, 56, 56), (64, 1, 3, 3), True, dict(padding=1, groups=64)),
    ("conv_transpose2d", (2, 64, 28, 28), (64, 32, 3, 3), True, dict(stride=2, padding=1, output_padding=1)),
    ("conv_transpose2d", (1, 64, 56, 56), (64, 32, 3, 3), True, dict(padding=1)),
    ("conv_transpose2d", (1, 32, 28, 28), (32, 16, 3, 3), True, dict(stride=2, dilation=2)),
    ("conv1d", (4, 64, 3000), (64, 64, 5), True, dict(padding=2)),
    ("conv_transpose1d", (4, 64, 1000), (64, 32, 4), True, dict(stride=2, padding=1)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op, xshape, wshape, has_bias, kwargs", EDGE_CASES)
def test_edge_cases_match_torch(op, xshape, wshape, has_bias, kwargs, dtype):
    rng = np.random.default_rng(sum(xshape) + 7 * sum(wshape))
    x = rng.standard_normal(xshape).astype(dtype)
    w = rng.standard_normal(wshape).astype(dtype)
    n_out = wshape[1] * kwargs.get("groups", 1) if TRANSPOSED[op] else wshape[0]
    b = rng.standard_normal(n_out).astype(dtype) if has_bias else None
    assert_matches_torch(op, x, w, b, **kwargs)


@pytest.mark.parametrize("op", OPS)
def test_defaults_match_torch(op):
    rng = np.random.default_rng(3)
    nd = NDIM[op]
    x = rng.standard_normal((2, 3) + (6,) * nd)
    w = rng.standard_normal(((3, 2) if TRANSPOSED[op] else (2, 3)) + (3,) * nd)
    assert_matches_torch(op, x, w)
    assert_matches_torch(op, x, w, rng.standard_normal(2))




NONFINITE_CASES = [
    ("conv2d", (2, 4, 9, 9), (6, 4, 3, 3), dict(padding=1)),
    ("conv2d", (2, 4, 9, 9), (4, 1, 3, 3), dict(groups=4, padding=2, stride=2)),
    ("conv2d", (2, 4, 9, 9), (6, 4, 3, 3), dict(padding=1, padding_mode="reflect")),
    ("conv_transpose2d", (2, 4, 9, 9), (4, 6, 3, 3), dict(stride=2, padding=1)),
    ("conv_transpose2d", (2, 4, 9, 9), (4, 6, 3, 3), dict(stride=2, dilation=2)),
    ("conv1d", (2, 4, 20), (6, 4, 3), dict(padding=1)),
    ("conv_transpose1d", (2, 4, 20), (4, 6, 3), dict(stride=2)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("value", [np.nan, np.inf])
@pytest.mark.parametrize("op, xshape, wshape, kwargs", NONFINITE_CASES)
def test_non_finite_inputs_spread_like_torch(op, xshape, wshape, kwargs, value, dtype):
    # a NaN/inf input element reaches exactly the outputs whose window covers it (non-finite
    # weights are left out: torch itself differs between its float32 and float64 kernels there)
    rng = np.random.default_rng(5)
    x = rng.standard_normal(xshape).astype(dtype)
    x.reshape(-1)[x.size // 3] = value
    w = rng.standard_normal(wshape).astype(dtype)
    got, want = convcore_call(op, x, w, **kwargs), torch_call(op, x, w, **kwargs)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isposinf(got), np.isposinf(want))
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want))
    assert np.any(~np.isfinite(got))


@pytest.mark.parametrize("op", OPS)
def test_torchs_keyword_names(op):
    rng = np.random.default_rng(4)
    nd = NDIM[op]
    x = rng.standard_normal((2, 4) + (7,) * nd)
    w = rng.standard_normal(((4, 1) if TRANSPOSED[op] else (4, 2)) + (3,) * nd)
    b = rng.standard_normal(2 if TRANSPOSED[op] else 4)
    kwargs = dict(input=x, weight=w, bias=b, stride=2, padding=1, dilation=1, groups=2)
    if TRANSPOSED[op]:
        kwargs["output_padding"] = 1
    got = getattr(convcore, op)(**kwargs)
    want = getattr(convcore, op)(x, w, b, **{k: v for k, v in kwargs.items() if k not in ("input", "weight", "bias")})
    np.testing.assert_array_equal(got, want)
    assert_matches_torch(op, x, w, b, **{k: v for k, v in kwargs.items() if k not in ("input", "weight", "bias")})
    assert getattr(convcore, op) is getattr(convcore.api, op)
    assert op in convcore.__all__


@pytest.mark.parametrize("op", OPS)
def test_numpy_integers_are_integers(op):
    rng = np.random.default_rng(6)
    nd = NDIM[op]
    x = rng.standard_normal((2, 4) + (8,) * nd)
    w = rng.standard_normal(((4, 1) if TRANSPOSED[op] else (4, 2)) + (3,) * nd)
    plain = convcore_call(op, x, w, stride=2, padding=1, groups=2)
    numpy_ints = convcore_call(op, x, w, stride=np.int64(2), padding=(np.int32(1),) * nd, groups=np.int8(2))
    np.testing.assert_array_equal(numpy_ints, plain)
