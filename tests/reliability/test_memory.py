"""Memory: repeated calls do not leak (RSS stable over 500 calls, rejected calls included), and a
call's peak extra memory stays within the README's bound: the output, plus up to 40 MiB of
scratch (the sub-pixel kernel's repacked weights are at most 32 MiB), plus 4 MiB per thread.

Each measurement runs in a fresh child process: RSS of the test process says nothing useful.
"""
import pytest
from relutil import run_child, under_sanitizer

pytestmark = pytest.mark.skipif(under_sanitizer(), reason="AddressSanitizer's allocator changes RSS")

MIB = 2**20


def test_repeated_calls_do_not_leak():
    rc, results, output = run_child(
        """
import gc
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
rng = np.random.default_rng(0)
calls = []
for dtype in (np.float32, np.float64):
    x = rng.standard_normal((2, 8, 24, 24)).astype(dtype)
    calls += [
        lambda x=x: convcore.conv2d(x, np.ones((8, 8, 3, 3), x.dtype), np.ones(8, x.dtype), padding=1),
        lambda x=x: convcore.conv2d(x, np.ones((8, 1, 3, 3), x.dtype), groups=8, padding="same", padding_mode="reflect"),
        lambda x=x: convcore.conv2d(x[..., ::2], np.ones((4, 8, 1, 1), x.dtype)),  # non-contiguous input
        lambda x=x: convcore.conv_transpose2d(x, np.ones((8, 4, 3, 3), x.dtype), stride=2, output_padding=1),
        lambda x=x: convcore.conv_transpose2d(x, np.ones((8, 8, 3, 3), x.dtype), stride=2, dilation=2),
        lambda x=x: convcore.conv1d(x[0], np.ones((3, 24, 5), x.dtype), stride=2),
        lambda x=x: convcore.conv_transpose1d(x[:, :, 0], np.ones((8, 2, 3), x.dtype), padding=1),
        lambda x=x: convcore.nn.Conv2d(8, 8, 3, dtype=x.dtype, seed=1)(x),
    ]
def rejected():
    try:
        convcore.conv2d(np.ones((1, 3, 5, 5)), np.ones((4, 2, 3, 3)))
    except ValueError:
        pass
def run(n):
    for i in range(n):
        calls[i % len(calls)]()
        rejected()
run(100)
gc.collect()
before = rss()
run(500)
gc.collect()
report(growth=rss() - before)
"""
    )
    assert rc == 0 and results, output[-3000:]
    assert results[0]["growth"] < 4 * MIB, f"RSS grew by {results[0]['growth'] / MIB:.1f} MiB over 500 calls"


# name: (op, x shape, w shape, kwargs); large enough that scratch and output dominate the noise
PEAK_CASES = {
    "conv2d im2col": ("conv2d", (4, 64, 56, 56), (64, 64, 3, 3), dict(padding=1)),
    "conv2d 1x1": ("conv2d", (4, 256, 28, 28), (128, 256, 1, 1), {}),
    "conv2d depthwise": ("conv2d", (4, 64, 56, 56), (64, 1, 3, 3), dict(padding=1, groups=64)),
    "conv2d long reduction": ("conv1d", (2, 1024, 1087), (1, 1024, 1024), {}),
    "conv_transpose2d subpixel": ("conv_transpose2d", (4, 64, 28, 28), (64, 32, 4, 4), dict(stride=2, padding=1)),
    "conv_transpose2d col2im": ("conv_transpose2d", (4, 64, 28, 28), (64, 32, 3, 3), dict(stride=2, dilation=2)),
    "conv_transpose2d direct": ("conv_transpose2d", (4, 2, 112, 112), (2, 2, 3, 3), dict(stride=2)),
}


@pytest.mark.parametrize("name", PEAK_CASES)
def test_peak_extra_memory_within_the_readme_bound(name):
    op, x_shape, w_shape, kwargs = PEAK_CASES[name]
    rc, results, output = run_child(
        f"""
import resource
def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
x = np.ones({x_shape}, np.float32)
w = np.ones({w_shape}, np.float32)
# BLAS buffers and thread stacks in place first: the peak measured is the call's own
convcore.conv2d(np.ones((4, 64, 16, 16), np.float32), np.ones((64, 64, 3, 3), np.float32), padding=1)
convcore.conv_transpose2d(np.ones((4, 64, 8, 8), np.float32), np.ones((64, 32, 4, 4), np.float32), stride=2)
before = peak()
out = convcore.{op}(x, w, **{kwargs})
report(extra=peak() - before, output=out.nbytes, threads=convcore.get_num_threads())
"""
    )
    assert rc == 0 and results, output[-3000:]
    r = results[0]
    bound = r["output"] + 40 * MIB + 4 * MIB * r["threads"]
    assert r["extra"] <= bound, (
        f"{name}: peak extra memory {r['extra'] / MIB:.1f} MiB > bound {bound / MIB:.1f} MiB "
        f"(output {r['output'] / MIB:.1f} MiB, {r['threads']} threads)"
    )
