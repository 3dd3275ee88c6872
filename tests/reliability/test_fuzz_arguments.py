"""Fuzzing of the argument surface against torch: arbitrary, mostly invalid, calls.

For every drawn call either torch and convcore both accept it and agree, or both reject it, with
convcore raising ValueError/TypeError/MemoryError/OverflowError with a message; nothing else
(no other exception, no crash). Deliberate differences, not counted as mismatches: convcore
rejects every dtype but float32/float64 (torch computes integer convolutions, and complex ones),
takes anything np.asarray takes (lists) where torch needs tensors (torch gets the array), and
validates calls that torch lets through (see ``deliberate``).
Calls whose output or padded input would be possible but big (256 MiB up to 1 PiB) are not
drawn; calls whose sizes need more than int64 must be rejected by convcore, whatever torch's
int64 arithmetic makes of them.

Examples: CONVCORE_FUZZ_EXAMPLES in total over this file's tests (default 2000); derandomized
when the CI environment variable is set, so CI always runs the same calls.
"""
import math
import os

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from relutil import NDIM, TRANSPOSED, assert_matches_torch, convcore_conv, torch_conv

EXAMPLES = int(os.environ.get("CONVCORE_FUZZ_EXAMPLES", "2000"))
FUZZ = settings(
    max_examples=max(1, EXAMPLES // 2),
    deadline=None,
    derandomize=bool(os.environ.get("CI")),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
CONVCORE_ERRORS = (ValueError, TypeError, MemoryError, OverflowError)
FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
OTHER_DTYPES = [np.float16, np.int64, np.int32, np.bool_, np.complex64, object]
HUGE = [2**31 - 1, 2**31, 2**32 + 1, 2**40, 2**62, 2**63 - 1, 2**63, 2**64, 10**30, -(2**63)]
BAND = (2**28, 2**50)  # bytes: possible but too big to compute here

scalars = st.one_of(
    st.integers(-2, 4),
    st.sampled_from(HUGE),
    st.sampled_from([1.0, 0.5, -1.0, float("nan"), True, False, None, "same", "valid", "full", "", b"1"]),
    st.sampled_from([np.int64(2), np.int32(1), np.uint8(1), np.float64(1.0), np.bool_(True)]),
    st.builds(np.array, st.integers(0, 3)),
)
values = st.one_of(scalars, st.lists(scalars, max_size=3), st.lists(scalars, max_size=3).map(tuple))
small_ints = st.one_of(st.integers(0, 3), st.tuples(st.integers(0, 3), st.integers(0, 3)).map(list))


def shape(draw, ndim_lo=0, ndim_hi=5):
    return tuple(draw(st.lists(st.integers(0, 4), min_size=ndim_lo, max_size=ndim_hi)))


def array(draw, shape, dtype):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    a = np.asarray(rng.standard_normal(shape) * 2)
    if dtype is object:
        return a.astype(object)
    return a.astype(dtype)


def rare(draw):
    """True one time in ten (hypothesis favours small integers, hence the top one)."""
    return draw(st.integers(0, 9)) == 9


@st.composite
def calls(draw, ops):
    op = draw(st.sampled_from(ops))
    nd = NDIM[op]
    groups = draw(st.integers(1, 3))
    cin_g, cout_g = (draw(st.just(0) if rare(draw) else st.integers(1, 3)) for _ in "io")
    batch = (draw(st.integers(0, 2)),) if draw(st.booleans()) else ()
    x_shape = batch + (cin_g * groups,) + tuple(draw(st.lists(st.integers(0, 6), min_size=nd, max_size=nd)))
    kernel = tuple(draw(st.lists(st.integers(0 if rare(draw) else 1, 4), min_size=nd, max_size=nd)))
    w_shape = ((cin_g * groups, cout_g) if TRANSPOSED[op] else (cout_g * groups, cin_g)) + kernel
    n_out = cout_g * groups
    if rare(draw):
        x_shape = shape(draw)
    if rare(draw):
        w_shape = shape(draw)
    dtype = draw(st.sampled_from(OTHER_DTYPES)) if rare(draw) else draw(st.sampled_from(FLOATS))
    w_dtype = dtype if not rare(draw) else draw(st.sampled_from(list(FLOATS) + OTHER_DTYPES))
    x, w = array(draw, x_shape, dtype), array(draw, w_shape, w_dtype)
    b = draw(st.sampled_from([None, "good", "good", "odd"]))
    if b is not None:
        b_dtype = dtype if not rare(draw) else draw(st.sampled_from(list(FLOATS) + OTHER_DTYPES))
        b = array(draw, (n_out,) if b == "good" else shape(draw, 0, 2), b_dtype)
    kwargs = {}
    names = ["stride", "padding", "dilation", "groups"]
    names += ["output_padding"] if TRANSPOSED[op] else ["padding_mode"]
    plausible = {
        "stride": st.integers(1, 3), "dilation": st.integers(1, 3), "padding": st.integers(0, 2),
        "output_padding": st.integers(0, 2), "groups": st.just(groups),
        "padding_mode": st.sampled_from(["zeros", "reflect", "replicate", "circular"]),
    }
    for name in names:
        choice = draw(st.integers(0, 9))  # default, plausible, anything
        if choice < 4:
            continue
        if choice < 9:
            value = draw(plausible[name])
            kwargs[name] = value if name in ("groups", "padding_mode") or draw(st.booleans()) \
                else [value] * nd if draw(st.booleans()) else (value,)
        else:
            kwargs[name] = draw(st.one_of(values, st.just("Zeros"), small_ints))
    as_list = rare(draw) and x.dtype != object
    return op, (x.tolist() if as_list else x), w, b, kwargs


def _ints(value, n):
    """``value`` as n Python ints when it is an int or a 1- or n-sequence of ints, else None."""
    def is_int(v):
        return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))

    if is_int(value):
        return (int(value),) * n
    if isinstance(value, (list, tuple)) and len(value) in (1, n) and all(is_int(v) for v in value):
        return tuple(int(v) for v in value) * (n if len(value) == 1 else 1)
    return None


def predicted_bytes(op, x, w, kwargs):
    """An upper estimate of the largest buffer a call that passes validation allocates (0 when
    the arguments cannot pass it anyway)."""
    nd = NDIM[op]
    x, w = np.asarray(x), np.asarray(w)
    if x.ndim not in (nd + 1, nd + 2) or w.ndim != nd + 2:
        return 0
    stride, dilation = _ints(kwargs.get("stride", 1), nd), _ints(kwargs.get("dilation", 1), nd)
    groups = _ints(kwargs.get("groups", 1), 1)
    if stride is None or dilation is None or groups is None or min(stride) < 1:
        return 0
    spatial, kernel = x.shape[-nd:], w.shape[2:]
    padding = kwargs.get("padding", 0)
    padded = 0
    if TRANSPOSED[op]:
        pads, out_pads = _ints(padding, nd), _ints(kwargs.get("output_padding", 0), nd)
        if pads is None or out_pads is None:
            return 0
        out = [(s - 1) * st_ - 2 * p + d * (k - 1) + o + 1
               for s, st_, p, d, k, o in zip(spatial, stride, pads, dilation, kernel, out_pads)]
        n_out = w.shape[1] * groups[0]
    else:
        if padding in ("same", "valid"):
            totals = [d * (k - 1) if padding == "same" else 0 for d, k in zip(dilation, kernel)]
        else:
            pads = _ints(padding, nd)
            if pads is None:
                return 0
            totals = [2 * p for p in pads]
        out = [(s + t - d * (k - 1) - 1) // st_ + 1 for s, t, d, k, st_ in zip(spatial, totals, dilation, kernel, stride)]
        n_out = w.shape[0]
        padded = math.prod(x.shape[:-nd]) * math.prod(max(s + t, 0) for s, t in zip(spatial, totals))
    batch = x.shape[0] if x.ndim == nd + 2 else 1
    return 8 * max(padded, batch * abs(n_out) * math.prod(max(o, 0) for o in out))


def deliberate(x, cc_error):
    """Calls torch accepts and convcore rejects by design, validating every call the same way:
    torch's backend for empty inputs skips the late checks (output_padding range, output size,
    dtypes), its transposed ops cast a bias of the other float dtype, its grouped float32
    transposed path lets an output size of 0 through (float64 rejects it, as convcore does), and
    nn.ConvNd takes a bytes padding as its byte values (b'1' pads by 49) where convcore wants ints."""
    message = str(cc_error)
    return (np.asarray(x).size == 0 or (isinstance(cc_error, TypeError) and "same dtype" in message)
            or message.endswith("Output size is too small") or message.endswith("not bytes"))


def check(op, x, w, b, kwargs):
    nbytes = predicted_bytes(op, x, w, kwargs)
    assume(not BAND[0] < nbytes < BAND[1])
    try:
        got, cc_error = convcore_conv(op, x, w, b, **kwargs), None
    except CONVCORE_ERRORS as exc:
        got, cc_error = None, exc
    call = f"convcore.{op}(x{np.shape(x)}:{np.asarray(x).dtype}, w{w.shape}:{w.dtype}, " \
           f"b{None if b is None else (b.shape, b.dtype)}, **{kwargs})"
    if cc_error is not None:
        assert str(cc_error), f"{call} raised {type(cc_error).__name__} without a message"
    operands = [np.asarray(x), w] + ([] if b is None else [b])
    if any(a.dtype not in FLOATS for a in operands):
        assert cc_error is not None, f"{call} accepted a non-float dtype"
        return
    if nbytes >= 2**63:
        assert cc_error is not None, f"{call} accepted a call whose sizes overflow int64"
        return
    try:
        torch_conv(op, np.asarray(x), w, b, **kwargs)
        torch_error = None
    except Exception as exc:  # noqa: BLE001 - torch's answer, whatever its type
        torch_error = exc
    if torch_error is None and cc_error is not None and not deliberate(x, cc_error):
        raise AssertionError(f"{call}: torch accepts, convcore raises {type(cc_error).__name__}: {cc_error}")
    if torch_error is not None and cc_error is None:
        raise AssertionError(f"{call}: convcore accepts, torch raises {type(torch_error).__name__}: {torch_error}")
    if cc_error is None:
        assert_matches_torch(op, got, np.asarray(x), w, b, **kwargs)


@FUZZ
@given(calls(("conv1d", "conv2d")))
def test_conv_arguments_fuzzed_against_torch(case):
    check(*case)


@FUZZ
@given(calls(("conv_transpose1d", "conv_transpose2d")))
def test_conv_transpose_arguments_fuzzed_against_torch(case):
    check(*case)
