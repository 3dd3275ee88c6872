"""pytest-benchmark suite over bench/cases.py: convcore, torch and onnxruntime side by side.

    pytest bench/ --benchmark-only                 # time every case, grouped per case and dtype
    pytest bench/ --benchmark-disable              # smoke run: each case once, checked against torch
    CONVCORE_BENCH_THREADS=1 pytest bench/ ...     # thread count for every library (default 2)

Missing peers are skipped with a reason. Outputs are checked against torch (loosely, see
cases.tolerance) on the value the benchmarked call returned, so a disabled run calls each
implementation once.
"""
import functools
import os

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import cases
import runners

THREADS = int(os.environ.get("CONVCORE_BENCH_THREADS", "2"))


@pytest.fixture(scope="module", autouse=True)
def _threads():
    runners.set_threads(THREADS)
    with threadpool_limits(limits=THREADS, user_api="blas"):
        yield


@functools.lru_cache(maxsize=1)  # the impls of one case and dtype run in a row; outputs can be 100 MB
def _torch_output(name, dtype):
    case = cases.BY_NAME[name]
    return runners.make("torch", case, *case.inputs(dtype), THREADS)()


@pytest.mark.parametrize("impl", runners.IMPLS)  # innermost loop: one group's impls run in a row
@pytest.mark.parametrize("dtype", cases.DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("case", cases.CASES, ids=lambda c: c.name)
def test_conv(benchmark, case, dtype, impl):
    if not runners.available(impl):
        pytest.skip(f"{impl} is not installed")
    if not runners.supports(impl, dtype):
        pytest.skip(f"{impl} has no {np.dtype(dtype).name} Conv/ConvTranspose")
    fn = runners.make(impl, case, *case.inputs(dtype), THREADS)
    benchmark.group = f"{case.name} {np.dtype(dtype).name}"
    benchmark.extra_info.update(op=case.op, input=case.x_shape, weight=case.w_shape,
                                kwargs=case.kwargs, flops=case.flops, threads=THREADS)
    out = benchmark(fn)
    assert out.shape == case.out_shape
    if impl != "torch" and runners.available("torch"):
        atol, rtol = cases.tolerance(case, dtype)
        np.testing.assert_allclose(out, _torch_output(case.name, dtype), atol=atol, rtol=rtol)
