# Tile-size rules shared by the GEMM kernels. Every choice here depends on shapes only, never on
# the thread count, so that results are bitwise identical for any num_threads.
from libc.limits cimport INT_MAX

# GEMMs below this many multiply-adds run single-threaded inside OpenBLAS anyway
# (65536 * GEMM_MULTITHREAD_THRESHOLD), so tiny calls skip the BLAS thread limiter.
cdef enum:
    BLAS_SERIAL_MNK = 262144
    MIN_TILE = 64          # pixels: below this the GEMM's N dimension starves the micro-kernel
    WANT_ITEMS = 8         # work items to aim for, so small batches still feed every core
    # ~5 us of work per thread: less does not repay waking a thread team (and the BLAS limiter,
    # ~2 us); 2 threads on a 3x3 conv of 590K multiply-adds: 34 -> 24 us (1M per thread: 1 thread)
    MACS_PER_THREAD = 262144
    MAX_SCRATCH = 4194304      # bytes of column buffer per thread, whatever the shape (<= one column)
    MIN_ROWS = 64              # GEMM rows per work item at least, when output channels are split
    MACS_PER_BYTE = 2          # a byte of weights streamed from L3 costs about two multiply-adds


cdef inline Py_ssize_t ceil_div(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    return (a + b - 1) // b


cdef inline Py_ssize_t span_lo(Py_ssize_t off, Py_ssize_t s) noexcept nogil:
    """The first q >= 0 with q*s + off >= 0 (a row position of stride s whose tap lands inside)."""
    return ceil_div(-off, s) if off < 0 else 0


cdef inline Py_ssize_t span_hi(Py_ssize_t off, Py_ssize_t s, Py_ssize_t n) noexcept nogil:
    """One past the last q >= 0 with q*s + off < n; 0 when there is none."""
    return ceil_div(n - off, s) if n > off else 0


cdef inline Py_ssize_t clamp(Py_ssize_t v, Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    return lo if v < lo else (hi if v > hi else v)


cdef inline Py_ssize_t tile_pixels(Py_ssize_t pixels, Py_ssize_t rows, Py_ssize_t itemsize,
                                   Py_ssize_t budget, Py_ssize_t planes) noexcept nogil:
    """Pixels per tile: a (rows, tile) column block fits `budget` bytes, at least MIN_TILE
    pixels, and an image is cut into enough tiles that `planes` (image, group) pairs give
    about WANT_ITEMS work items."""
    cdef Py_ssize_t p = budget // (rows * itemsize)
    cdef Py_ssize_t spread = ceil_div(pixels, ceil_div(WANT_ITEMS, planes))
    if spread < p:
        p = spread
    # MIN_TILE keeps the GEMM efficient, unless a long reduction (rows) would make even that
    # many pixels exceed MAX_SCRATCH: then scratch stays bounded and the GEMM is K-bound anyway
    if p < MIN_TILE:
        p = MIN_TILE
        if p * rows * itemsize > MAX_SCRATCH:
            p = MAX_SCRATCH // (rows * itemsize)
            if p < 1:
                p = 1
    # BLAS takes int sizes; the column block must stay addressable by them
    if p > INT_MAX // rows:
        p = INT_MAX // rows
    return p if p < pixels else pixels


cdef inline Py_ssize_t row_block(Py_ssize_t rows, Py_ssize_t items, Py_ssize_t min_rows,
                                 Py_ssize_t unit) noexcept nogil:
    """GEMM rows per work item: all of them when the tiles give WANT_ITEMS items, else blocks of
    a multiple of `unit` rows (whole packed row blocks), at least min_rows since each block redoes
    its tile's column gather, that give about WANT_ITEMS items. A block changes no result, only
    which thread computes it."""
    cdef Py_ssize_t rb
    if items >= WANT_ITEMS:
        return rows
    rb = ceil_div(rows, ceil_div(WANT_ITEMS, items))
    if rb < min_rows:
        rb = min_rows
    rb = ceil_div(rb, unit) * unit
    return rb if rb < rows else rows


cdef inline int team_size(int num_threads, Py_ssize_t items, Py_ssize_t macs) noexcept nogil:
    """Threads worth starting: no more than work items, and one per MACS_PER_THREAD of work.
    macs: the call's multiply-adds; a caller whose weights can dominate adds MACS_PER_BYTE per
    weight byte (a latent projected by 2 MB of weights is memory bound: two threads read it
    faster)."""
    cdef Py_ssize_t nt = macs // MACS_PER_THREAD
    if nt > items:
        nt = items
    if nt > num_threads:
        nt = num_threads
    return <int>nt if nt > 1 else 1
