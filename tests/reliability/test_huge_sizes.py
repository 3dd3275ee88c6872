"""Impossible sizes: outputs, padded inputs or contiguous copies that overflow int64 or exceed the
machine's memory raise MemoryError/OverflowError/ValueError before anything is allocated.

The operands are zero-memory views (np.broadcast_to), so only convcore's own allocations could be
big. Each case runs in a child process: a crash fails the case instead of killing pytest, and an
address-space limit of a few GiB turns any attempt to allocate the giant buffer into a plain
MemoryError (without the limit, memory overcommit would let it "succeed" and the first writes
summon the OOM killer). A MemoryError must therefore carry convcore's message, naming the
function: numpy's bare "Unable to allocate" means the allocation was attempted.
"""
import pytest
from relutil import run_child

# BIG: log2 of a float32 element count whose bytes are at least twice this machine's memory
SETUP = """
PHYS = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
BIG = (2 * PHYS).bit_length() - 1
def view(shape, dtype=np.float32):
    return np.broadcast_to(np.ones((), dtype), shape)
"""

# name: (operands x and w, call, exception types allowed); views are made outside the checked call
CASES = {
    "output elements overflow int64": (
        "view((2**20, 1, 2**20, 2**20)), view((2**10, 1, 1, 1))", "conv2d(x, w)", "MemoryError OverflowError"),
    "output bytes overflow int64": (
        "view((2**20, 1, 2**19, 2**20), np.float64), view((8, 1, 1, 1), np.float64)", "conv2d(x, w)",
        "MemoryError OverflowError"),
    "output exceeds memory": (
        "view((1, 1, 2**(BIG // 2 + 1), 2**(BIG // 2 + 1))), view((1, 1, 1, 1))", "conv2d(x, w)", "MemoryError"),
    "huge batch of views": ("view((2**(BIG - 1), 1, 1, 1)), view((4, 1, 1, 1))", "conv2d(x, w)", "MemoryError"),
    "conv1d huge padding": ("view((1, 1, 3)), view((1, 1, 1))", "conv1d(x, w, padding=2**40)", "MemoryError"),
    "conv1d padding past int64": (
        "view((1, 1, 3)), view((1, 1, 1))", "conv1d(x, w, padding=2**62)", "MemoryError OverflowError ValueError"),
    "conv_transpose2d huge stride": (
        "view((1, 1, 2**16, 2**16)), view((1, 1, 1, 1))", "conv_transpose2d(x, w, stride=2**15)",
        "MemoryError OverflowError"),
    "conv_transpose1d huge dilation": (
        "view((1, 1, 3)), view((1, 1, 3))", "conv_transpose1d(x, w, dilation=2**40 + 1)", "MemoryError OverflowError"),
    "conv_transpose1d stride past int64": (
        "view((1, 1, 3)), view((1, 1, 3))", "conv_transpose1d(x, w, stride=2**70)",
        "MemoryError OverflowError ValueError"),
    "replicate padding of a small input": (
        "view((1, 1, 4, 4)), view((1, 1, 1, 1))", "conv2d(x, w, padding=2**(BIG // 2), padding_mode='replicate')",
        "MemoryError"),
    "circular padding of a big view": (
        "view((1, 1, 2**(BIG // 2), 2**(BIG // 2))), view((1, 1, 1, 1))",
        "conv2d(x, w, padding=2**(BIG // 2), padding_mode='circular')", "MemoryError"),
    "groups beyond memory": (
        "view((1, 2**(BIG - 1), 1, 1)), view((2**(BIG - 1), 1, 1, 1))", "conv2d(x, w, groups=2**(BIG - 1))",
        "MemoryError OverflowError"),
    # small outputs, but the kernels need C-contiguous operands: copying these views is the danger
    "strided input view bigger than memory": (
        "view((1, 1, 2**(BIG // 2 + 1), 2**(BIG // 2 + 1))), view((1, 1, 1, 1))",
        "conv2d(x, w, stride=2**(BIG // 2))", "MemoryError"),
    "reduction past int32 over views": (
        "view((1, 2**(BIG - 1), 1, 1)), view((1, 2**(BIG - 1), 1, 1))", "conv2d(x, w)", "MemoryError ValueError"),
    "transposed reduction past int32 over views": (
        "view((1, 2**(BIG - 1), 1, 1)), view((2**(BIG - 1), 1, 1, 1))", "conv_transpose2d(x, w)",
        "MemoryError ValueError"),
}


@pytest.mark.parametrize("name", CASES)
def test_impossible_size_is_refused_before_allocating(name):
    operands, call, allowed = CASES[name]
    fn = call.split("(", 1)[0]
    rc, results, output = run_child(
        SETUP
        + f"""
x, w = {operands}
try:
    out = convcore.{call}
except BaseException as exc:
    report(kind=type(exc).__name__, message=str(exc))
else:
    report(kind="returned", shape=list(out.shape))
"""
    )
    assert rc == 0 and len(results) == 1, f"child exited with {rc}:\n{output[-3000:]}"
    kind, message = results[0]["kind"], results[0].get("message", "")
    assert kind in allowed.split(), f"{name}: {kind} {message or results[0]}"
    assert message, f"{name}: {kind} without a message"
    if kind == "MemoryError":
        assert fn in message, f"{name}: MemoryError not raised by convcore's size check: {message}"
