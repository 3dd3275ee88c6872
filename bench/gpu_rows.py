"""GPU rows for the benchmark: convcore's CUDA path against torch/cuDNN on the same device.

``rows()`` returns an empty list where cupy or a CUDA device is missing, so callers can always
append its rows. Times are device times between CUDA events, median of ``repeat`` timed batches
after a warm-up (which also compiles the kernels). torch runs with TF32 off (convcore computes in
full float32) and ``cudnn.benchmark`` on, so cuDNN uses its fastest exact algorithm.

    python bench/gpu_rows.py        # prints the table (float32 and float64)
"""
import functools
import statistics

import numpy as np

import convcore
from convcore import _gpu

# (name, op, input shape, weight shape, keyword arguments)
CASES = [
    ("resnet 3x3", "conv2d", (16, 64, 56, 56), (64, 64, 3, 3), dict(padding=1)),
    ("pointwise 1x1", "conv2d", (16, 256, 28, 28), (64, 256, 1, 1), {}),
    ("strided 3x3", "conv2d", (16, 128, 28, 28), (256, 128, 3, 3), dict(stride=2, padding=1)),
    ("depthwise 3x3", "conv2d", (16, 256, 28, 28), (256, 1, 3, 3), dict(padding=1, groups=256)),
    ("dilated 3x3", "conv2d", (8, 64, 64, 64), (64, 64, 3, 3), dict(padding=2, dilation=2)),
    ("conv1d k5", "conv1d", (32, 128, 1024), (128, 128, 5), dict(padding=2)),
    ("upsample k4 s2", "conv_transpose2d", (16, 64, 28, 28), (64, 32, 4, 4),
     dict(stride=2, padding=1)),
    ("transposed dil2 s2", "conv_transpose2d", (8, 64, 32, 32), (64, 64, 3, 3),
     dict(stride=2, dilation=2)),
    ("depthwise upsample", "conv_transpose2d", (16, 128, 28, 28), (128, 1, 4, 4),
     dict(stride=2, padding=1, groups=128)),
]


def _device_ms(run, event, elapsed_ms, sync, repeat, inner):
    run()  # warm-up: kernel compilation, cuDNN algorithm search, memory pool growth
    sync()
    times = []
    for _ in range(repeat):
        start, end = event(), event()
        start.record()
        for _ in range(inner):
            run()
        end.record()
        end.synchronize()
        times.append(elapsed_ms(start, end) / inner)
    return statistics.median(times)


def rows(dtype=np.float32, repeat=10, inner=5, seed=0):
    """One dict per case: name, op, shapes, dtype, convcore_ms and torch_ms (None where torch
    has no CUDA device)."""
    if not _gpu.available():
        return []
    import cupy

    torch = _torch_cuda()
    rng = np.random.default_rng(seed)
    result = []
    for name, op, x_shape, w_shape, kwargs in CASES:
        x = rng.standard_normal(x_shape).astype(dtype)
        w = rng.standard_normal(w_shape).astype(dtype)
        xc, wc = cupy.asarray(x), cupy.asarray(w)
        run = functools.partial(getattr(convcore, op), xc, wc, **kwargs)
        ours = _device_ms(run, cupy.cuda.Event, cupy.cuda.get_elapsed_time,
                          cupy.cuda.Device().synchronize, repeat, inner)
        theirs = None
        if torch is not None:
            xt, wt = torch.as_tensor(x, device="cuda"), torch.as_tensor(w, device="cuda")
            tfn = getattr(torch.nn.functional, op)
            theirs = _device_ms(functools.partial(tfn, xt, wt, **kwargs),
                                lambda: torch.cuda.Event(enable_timing=True),
                                lambda s, e: s.elapsed_time(e), torch.cuda.synchronize,
                                repeat, inner)
        result.append(dict(name=name, op=op, input=x_shape, weight=w_shape,
                           dtype=np.dtype(dtype).name, convcore_ms=ours, torch_ms=theirs))
    return result


def _torch_cuda():
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    return torch


def main():
    print(f"GPU: {_gpu.describe()}")
    print(f"{'case':<22}{'op':<18}{'dtype':<9}{'convcore ms':>12}{'torch ms':>10}{'ratio':>8}")
    for dtype in (np.float32, np.float64):
        for r in rows(dtype):
            torch_ms = "-" if r["torch_ms"] is None else f"{r['torch_ms']:.3f}"
            ratio = "-" if r["torch_ms"] is None else f"{r['convcore_ms'] / r['torch_ms']:.2f}"
            print(f"{r['name']:<22}{r['op']:<18}{r['dtype']:<9}{r['convcore_ms']:>12.3f}"
                  f"{torch_ms:>10}{ratio:>8}")


if __name__ == "__main__":
    main()
