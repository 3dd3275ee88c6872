"""Invariances: conv_transpose is the adjoint of conv; results do not depend on the thread count
or on other Python threads calling at the same time."""
import math
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from threadpoolctl import threadpool_info

import convcore
from apiutil import TRANSPOSED, convcore_call


@pytest.fixture
def num_threads():
    """convcore.set_num_threads, restored to the default afterwards."""
    yield convcore.set_num_threads
    convcore.set_num_threads(None)


@st.composite
def adjoint_cases(draw):
    nd = draw(st.sampled_from([1, 2]))
    ints = lambda lo, hi: tuple(draw(st.lists(st.integers(lo, hi), min_size=nd, max_size=nd)))  # noqa: E731
    groups = draw(st.sampled_from([1, 2, 3]))
    cin, cout = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))
    kernel, stride, dilation, padding = ints(1, 4), ints(1, 3), ints(1, 3), ints(0, 3)
    # the input must hold the dilated kernel after padding
    spatial = tuple(max(1, d * (k - 1) + 1 - 2 * p) + draw(st.integers(0, 6))
                    for k, d, p in zip(kernel, dilation, padding))
    batch = draw(st.integers(1, 2))
    seed = draw(st.integers(0, 2**32 - 1))
    return nd, groups, (batch, cin) + spatial, (cout, cin // groups) + kernel, stride, padding, dilation, seed


@given(case=adjoint_cases())
def test_conv_transpose_is_the_adjoint_of_conv(case):
    nd, groups, xshape, wshape, stride, padding, dilation, seed = case
    conv, conv_t = ("conv1d", "conv_transpose1d") if nd == 1 else ("conv2d", "conv_transpose2d")
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal(xshape), rng.standard_normal(wshape)
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    y_shape = convcore_call(conv, x, w, **kw).shape
    y = rng.standard_normal(y_shape)
    # output_padding restores the rows/columns the strided conv skipped at the end
    output_padding = tuple(
        h - ((o - 1) * s - 2 * p + d * (k - 1) + 1)
        for h, o, s, p, d, k in zip(xshape[2:], y_shape[2:], stride, padding, dilation, wshape[2:])
    )
    xt = convcore_call(conv_t, y, w, output_padding=output_padding, **kw)
    assert xt.shape == x.shape
    lhs = np.vdot(convcore_call(conv, x, w, **kw), y)
    rhs = np.vdot(x, xt)
    magnitude = np.vdot(convcore_call(conv, np.abs(x), np.abs(w), **kw), np.abs(y))
    assert abs(lhs - rhs) <= 1e-12 * magnitude


# (op, x shape, w shape, kwargs): big enough for several images, groups and tiles per thread
THREAD_CASES = [
    ("conv2d", (4, 16, 33, 31), (24, 16, 3, 3), dict(padding=1)),
    ("conv2d", (1, 64, 56, 56), (64, 64, 3, 3), dict(padding=1)),
    ("conv2d", (3, 32, 40, 40), (32, 32, 1, 1), {}),
    ("conv2d", (2, 32, 41, 39), (48, 8, 3, 5), dict(stride=2, padding=(1, 2), groups=4)),
    ("conv2d", (2, 32, 30, 30), (32, 1, 5, 5), dict(padding=2, groups=32)),
    ("conv2d", (2, 8, 30, 30), (8, 8, 4, 4), dict(padding="same", dilation=2)),
    ("conv2d", (2, 8, 30, 30), (8, 8, 3, 3), dict(padding=2, padding_mode="reflect")),
    ("conv1d", (5, 16, 500), (16, 16, 7), dict(padding=3, stride=2)),
    ("conv_transpose2d", (4, 16, 20, 18), (16, 24, 3, 3), dict(padding=1)),
    ("conv_transpose2d", (2, 32, 28, 28), (32, 16, 3, 3), dict(stride=2, padding=1, output_padding=1)),
    ("conv_transpose2d", (2, 32, 20, 20), (32, 16, 4, 4), dict(stride=2, padding=1)),
    ("conv_transpose2d", (2, 16, 20, 20), (16, 8, 3, 3), dict(stride=2, dilation=2, groups=2)),
    ("conv_transpose2d", (2, 32, 20, 20), (32, 1, 3, 3), dict(stride=3, groups=32)),
    ("conv_transpose1d", (5, 16, 300), (16, 8, 5), dict(stride=3, padding=2, output_padding=1)),
]


def _operands(op, xshape, wshape, kwargs, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(xshape).astype(dtype)
    w = rng.standard_normal(wshape).astype(dtype)
    n_out = wshape[1] * kwargs.get("groups", 1) if TRANSPOSED[op] else wshape[0]
    return x, w, rng.standard_normal(n_out).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("op, xshape, wshape, kwargs", THREAD_CASES)
def test_thread_count_does_not_change_a_bit(op, xshape, wshape, kwargs, dtype, num_threads):
    x, w, b = _operands(op, xshape, wshape, kwargs, dtype)
    num_threads(1)
    serial = convcore_call(op, x, w, b, **kwargs)
    for n in (2, 3):
        num_threads(n)
        np.testing.assert_array_equal(convcore_call(op, x, w, b, **kwargs), serial, err_msg=f"{n} threads")


@st.composite
def threaded_calls(draw):
    """Random calls with at least ~3 M multiply-adds, enough to start a thread team."""
    op = draw(st.sampled_from(["conv2d", "conv_transpose2d", "conv1d", "conv_transpose1d"]))
    nd = 2 if op.endswith("2d") else 1
    groups = draw(st.sampled_from([1, 2, 4]))
    cin, cout = groups * draw(st.integers(1, 8)), groups * draw(st.integers(1, 8))
    kernel = tuple(draw(st.lists(st.integers(1, 5), min_size=nd, max_size=nd)))
    stride, dilation, padding = draw(st.integers(1, 3)), draw(st.integers(1, 2)), draw(st.integers(0, 2))
    side = draw(st.integers(12, 40)) if nd == 2 else draw(st.integers(200, 2000))
    kwargs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    if op.startswith("conv_transpose"):
        wshape = (cin, cout // groups) + kernel
        kwargs["output_padding"] = draw(st.integers(0, max(stride, dilation) - 1))
        pixels = (side * stride) ** nd
    else:
        wshape = (cout, cin // groups) + kernel
        pixels = (-(-side // stride)) ** nd
    # hypothesis favours small draws: the batch brings the work up to the threading threshold
    macs_per_image = cout * (cin // groups) * math.prod(kernel) * pixels
    batch = min(64, max(1, -(-3_000_000 // macs_per_image)))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    return op, (batch, cin) + (side,) * nd, wshape, kwargs, dtype


@settings(max_examples=60)
@given(call=threaded_calls())
def test_thread_count_does_not_change_a_bit_random(call):
    op, xshape, wshape, kwargs, dtype = call
    x, w, b = _operands(op, xshape, wshape, kwargs, dtype)
    try:
        convcore.set_num_threads(1)
        serial = convcore_call(op, x, w, b, **kwargs)
        convcore.set_num_threads(2)
        np.testing.assert_array_equal(convcore_call(op, x, w, b, **kwargs), serial)
    finally:
        convcore.set_num_threads(None)


def test_set_num_threads(num_threads):
    num_threads(1)
    assert convcore.get_num_threads() == 1
    num_threads(None)
    assert convcore.get_num_threads() >= 1
    with pytest.raises(ValueError):
        num_threads(0)
    with pytest.raises(TypeError):
        num_threads(2.0)


def _blas_thread_limits():
    return [(lib["filepath"], lib["num_threads"]) for lib in threadpool_info() if lib["user_api"] == "blas"]


@pytest.mark.parametrize("threads_per_call", [None, 1])
def test_concurrent_python_threads_get_the_serial_result(threads_per_call, num_threads):
    n_workers, repeats = 8, 3
    cases = [THREAD_CASES[i % len(THREAD_CASES)] for i in range(0, 2 * n_workers, 2)]
    assert {op for op, *_ in cases} >= {"conv2d", "conv_transpose2d"}
    num_threads(threads_per_call)
    inputs = [_operands(op, xs, ws, kw, np.float32 if i % 2 else np.float64, seed=i)
              for i, (op, xs, ws, kw) in enumerate(cases)]
    expected = [convcore_call(op, *args, **kw) for (op, _, _, kw), args in zip(cases, inputs)]
    limits_before = _blas_thread_limits()

    barrier = threading.Barrier(n_workers)
    results = [[] for _ in range(n_workers)]
    errors = []

    def work(i):
        op, _, _, kw = cases[i]
        try:
            barrier.wait(timeout=60)
            for _ in range(repeats):
                results[i].append(convcore_call(op, *inputs[i], **kw))
        except Exception as exc:  # reported by the main thread
            errors.append(exc)

    # daemon threads: a deadlock fails the test instead of hanging the run
    workers = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(n_workers)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in workers), "worker threads did not finish (deadlock?)"
    assert not errors, errors
    for i, (got, want) in enumerate(zip(results, expected)):
        assert len(got) == repeats
        for r in got:
            np.testing.assert_array_equal(r, want, err_msg=f"worker {i}: {cases[i][0]}")
    assert _blas_thread_limits() == limits_before  # the BLAS limit was restored, not leaked


@pytest.mark.parametrize("op", ["conv2d", "conv_transpose2d"])
def test_repeated_calls_are_bitwise_stable(op):
    case = next(c for c in THREAD_CASES if c[0] == op)
    x, w, b = _operands(*case, np.float32)
    first = convcore_call(op, x, w, b, **case[3])
    for _ in range(3):
        np.testing.assert_array_equal(convcore_call(op, x, w, b, **case[3]), first)
