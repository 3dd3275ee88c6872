"""Recycled output buffers (bindings/_outputs.py): a buffer is taken again only when nothing refers
to the array it backed, results are those of fresh outputs, and the pool stays bounded."""
import threading

import numpy as np
import pytest

import convcore
from convcore.api import _conv, _outputs


@pytest.fixture
def small_pool(monkeypatch):
    """Pool outputs from 1 KiB, so that small calls exercise it."""
    monkeypatch.setattr(_outputs, "POOL_MIN_BYTES", 1024)
    _outputs.clear()
    _conv._PLANS.clear()
    yield
    _outputs.clear()


def operands(seed, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((3, 4, 20, 20)).astype(dtype), rng.standard_normal((5, 4, 3, 3)).astype(dtype)


def address(a):
    return a.__array_interface__["data"][0]


def fresh(x, w, **kwargs):
    """The result with pooling off."""
    _outputs.clear()
    old = _outputs.POOL_MIN_BYTES
    _outputs.POOL_MIN_BYTES = 2**62
    try:
        return convcore.conv2d(x, w, **kwargs)
    finally:
        _outputs.POOL_MIN_BYTES = old


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_dropped_output_is_reused_with_correct_values(small_pool, dtype):
    x, w = operands(0, dtype)
    out = convcore.conv2d(x, w, padding=1)
    where = address(out)
    del out
    x2, _ = operands(1, dtype)
    again = convcore.conv2d(x2, w, padding=1)
    assert address(again) == where
    np.testing.assert_array_equal(again, fresh(x2, w, padding=1))


def test_an_output_in_use_is_never_reused(small_pool):
    x, w = operands(0)
    first = convcore.conv2d(x, w)
    kept = first.copy()
    view = convcore.conv2d(x, w)[1:]  # only a view of the second output survives
    for seed in range(1, 4):
        x2, _ = operands(seed)
        out = convcore.conv2d(x2, w)
        assert not np.shares_memory(out, first) and not np.shares_memory(out, view)
        np.testing.assert_array_equal(out, fresh(x2, w))
    np.testing.assert_array_equal(first, kept)


def test_unbatched_outputs_keep_their_buffer(small_pool):
    x, w = operands(0)
    out = convcore.conv2d(x[0], w)  # a view of the batched output
    kept = out.copy()
    for seed in range(1, 3):
        x2, _ = operands(seed)
        assert not np.shares_memory(convcore.conv2d(x2[0], w), out)
    np.testing.assert_array_equal(out, kept)


def test_the_pool_is_bounded(small_pool):
    w = np.ones((2, 1, 1, 1), np.float32)
    outs = [convcore.conv2d(np.ones((1, 1, 20 + i, 20), np.float32), w) for i in range(2 * _outputs.POOL_MAX_BUFFERS)]
    assert len(_outputs._pool) == _outputs.POOL_MAX_BUFFERS
    del outs
    # outside the pooled range: a plain array of its own
    small = convcore.conv2d(np.ones((1, 1, 2, 2), np.float32), w)
    assert small.flags.owndata


def test_default_range_pools_a_large_output():
    """The real bounds: a 36 MB output comes from the pool, and is reused once dropped."""
    _outputs.clear()
    x = np.ones((1, 1, 3000, 3000), np.float32)
    w = np.full((1, 1, 1, 1), 2.0, np.float32)
    out = convcore.conv2d(x, w)
    assert _outputs.POOL_MIN_BYTES <= out.nbytes <= _outputs.POOL_MAX_BYTES and not out.flags.owndata
    where = address(out)
    del out
    again = convcore.conv2d(x, w)
    assert address(again) == where and (again == 2).all()
    del again
    _outputs.clear()


def test_threads_never_share_live_outputs(small_pool):
    x, w = operands(0)
    want = fresh(x, w)
    errors = []
    lock = threading.Lock()
    live = {}  # thread index: its last three outputs

    def worker(i):
        for _ in range(200):
            out = convcore.conv2d(x, w)
            with lock:
                others = [a for mine in live.values() for a in mine]
                live[i] = (live.get(i, []) + [out])[-3:]
            if any(np.shares_memory(out, other) for other in others):
                errors.append("a live output was handed out again")
            if not np.array_equal(live[i][0], want):
                errors.append("an output changed while in use")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
