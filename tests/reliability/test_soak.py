"""Concurrency soak: 8 Python threads run mixed ops, shapes and dtypes for a bounded time while
another thread keeps changing set_num_threads; every result is bitwise equal to the serial one.

CONVCORE_SOAK_SECONDS sets the duration (default 20; the kernels give the same bits for any thread
count, so changing it concurrently must not change a result).
"""
import os
import threading
import time

import numpy as np
from relutil import under_sanitizer

import convcore

SECONDS = float(os.environ.get("CONVCORE_SOAK_SECONDS", "5" if under_sanitizer() else "20"))
THREADS = 8

# (op, x shape, w shape, bias, kwargs): one case per kernel path, small enough to run many times
CASES = [
    ("conv2d", (2, 16, 20, 20), (16, 16, 3, 3), True, dict(padding=1)),
    ("conv2d", (3, 32, 12, 12), (32, 32, 1, 1), False, {}),
    ("conv2d", (2, 12, 17, 15), (12, 1, 3, 3), True, dict(padding=1, groups=12)),
    ("conv2d", (1, 6, 19, 21), (8, 3, 3, 2), True, dict(stride=2, dilation=2, groups=2)),
    ("conv2d", (2, 4, 11, 9), (5, 4, 3, 3), True, dict(padding="same", padding_mode="reflect")),
    ("conv1d", (4, 8, 50), (8, 8, 5), True, dict(padding=2, stride=2)),
    ("conv_transpose2d", (2, 16, 9, 9), (16, 8, 3, 3), True, dict(stride=2, padding=1, output_padding=1)),
    ("conv_transpose2d", (2, 16, 8, 8), (16, 16, 3, 3), False, dict(padding=1)),
    ("conv_transpose2d", (1, 3, 7, 8), (3, 2, 3, 3), True, dict(stride=2)),
    ("conv_transpose2d", (2, 8, 6, 6), (8, 8, 3, 3), True, dict(stride=2, dilation=2)),
    ("conv_transpose1d", (3, 6, 20), (6, 4, 4), True, dict(stride=3, groups=2)),
]


def operands(case, dtype):
    op, x_shape, w_shape, bias, kwargs = case
    rng = np.random.default_rng(len(x_shape) * 7 + sum(x_shape))
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    n_out = w_shape[1] * kwargs.get("groups", 1) if "transpose" in op else w_shape[0]
    b = rng.standard_normal(n_out).astype(dtype) if bias else None
    return op, x, w, b, kwargs


def test_threads_and_set_num_threads_changes_give_the_serial_bits():
    jobs = [operands(case, dtype) for case in CASES for dtype in (np.float32, np.float64)]
    convcore.set_num_threads(1)
    try:
        serial = [getattr(convcore, op)(x, w, b, **kw) for op, x, w, b, kw in jobs]
    finally:
        convcore.set_num_threads(None)
    deadline = time.monotonic() + SECONDS
    failures, counts = [], [0] * THREADS
    stop = threading.Event()

    def worker(k):
        i = k
        try:
            while time.monotonic() < deadline and not failures:
                op, x, w, b, kw = jobs[i % len(jobs)]
                got = getattr(convcore, op)(x, w, b, **kw)
                if got.dtype != x.dtype or not np.array_equal(got, serial[i % len(jobs)]):
                    failures.append(f"thread {k}: {op}{x.shape}{x.dtype}{kw} differs from the serial result")
                counts[k] += 1
                i += 3  # threads walk the jobs in different orders
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            failures.append(f"thread {k}: {type(exc).__name__}: {exc}")

    def changer():
        n = 0
        while not stop.is_set():
            convcore.set_num_threads((1, 2, 3, None)[n % 4])
            n += 1
            time.sleep(0.001)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(THREADS)]
    side = threading.Thread(target=changer)
    side.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    side.join()
    convcore.set_num_threads(None)  # the default, as the other tests expect
    assert not failures, failures[:5]
    assert min(counts) > 0, counts
