"""Large numpy outputs in recycled buffers.

glibc serves an allocation above 32 MiB (its largest mmap threshold) with fresh pages on every
call, and the kernel zeroes each page at its first write: for a 34 MB output that is about 10% of
a U-Net upsampling layer, 15% of a strided transposed conv over 20 images (measured, Zen 4). An
inference loop frees each layer's output before the next call of the same shape, so such outputs
are views of pooled buffers: a buffer is taken again only when nothing but the pool refers to it,
i.e. the array returned earlier and every view of it are gone. (numpy views keep their base alive.)
"""
import sys
import threading

import numpy as np

POOL_MIN_BYTES = 32 * 2**20  # glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit: below it, malloc reuses
POOL_MAX_BYTES = 256 * 2**20  # larger outputs are rare enough to return to the system
POOL_MAX_BUFFERS = 4  # buffers kept, most recently used first to stay

_lock = threading.Lock()
_pool = []  # uint8 arrays, least recently used first


def empty(shape, dtype, nbytes):
    """np.empty(shape, dtype), from a free pooled buffer where nbytes is in the pooled range."""
    if nbytes < POOL_MIN_BYTES or nbytes > POOL_MAX_BYTES:
        return np.empty(shape, dtype)
    with _lock:
        for i in range(len(_pool)):
            # 2 references: the pool's and getrefcount's argument; any array using it adds one
            if _pool[i].nbytes == nbytes and sys.getrefcount(_pool[i]) == 2:
                buf = _pool.pop(i)
                break
        else:
            buf = np.empty(nbytes, np.uint8)
            if len(_pool) >= POOL_MAX_BUFFERS:
                del _pool[0]  # if still in use, its array keeps it until dropped
        _pool.append(buf)
        return buf.view(dtype).reshape(shape)


def clear():
    """Forget every pooled buffer (arrays in use keep theirs)."""
    with _lock:
        _pool.clear()
