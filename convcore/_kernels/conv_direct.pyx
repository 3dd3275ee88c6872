"""conv2d by direct loops, for few input and output channels per group (depthwise and the like).

There a GEMM would have M = Cout/groups and K = Cin/groups*KH*KW far below what a BLAS
micro-kernel needs, while the work is memory bound, so each output element is summed
directly over its taps.

A work item is (image, group, tile of output rows x columns). For each input channel of the
group the item copies the input window its tile reads into a zero-padded block split into its
stride phases (row phase rho, column phase sig hold x[y0 + ry*sh + rho, x0 + cx*sw + sig]), so
that every tap is a fixed offset into that block, read contiguously, and no tap needs a bounds
check; the block then serves each output channel of the group, which has its own accumulator.
The first pass over an accumulator starts from the bias; in passes of up to MAX_PASS_TAPS taps,
one branch-free loop over the whole tile's flattened accumulator adds w[t] * block[q + offset[t]]
for those taps. Accumulator rows have the block's pitch, so their columns past the tile's width
are scratch, not copied out. (Strided taps read phase by phase: depthwise 3x3 stride 2 at batch 1
was 1.2x slower with strided loads, row by row.)

Every output element is computed by the same sequence of operations whatever the tiles or the
thread count (tile sizes depend on shapes only anyway), so results are bitwise identical for
any num_threads. Padding is read as stored zeros, so 0 * Inf gives NaN as in the GEMM paths.
"""
from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset

from convcore._kernels._openmp cimport omp_get_thread_num
from convcore._kernels._tiling cimport ceil_div, team_size
from convcore._kernels.conv_im2col cimport load_phases

cdef enum:
    MAX_PASS_TAPS = 5     # taps summed per pass over the accumulator
    TILE_PIXELS = 4096    # output pixels per work item: amortises the item, still spreads small batches
    TILE_COLS = 1024      # output columns per tile (before the stride): bounds the block's row length
    BLOCK_ELEMS = 32768   # padded input block per thread, in elements, unless one row group needs more


cdef inline void tap_pass(floating* acc, bint add, floating b, const floating* src,
                          const Py_ssize_t* off, const floating* wt, Py_ssize_t m,
                          Py_ssize_t length) noexcept nogil:
    """acc[q] = (acc[q] if add else b) + sum_{t < m} wt[t] * src[q + off[t]] for q < length.

    The compiler unswitches the loop-invariant `add`, so the first pass only stores."""
    cdef Py_ssize_t q
    cdef floating w0 = wt[0]
    cdef floating w1 = wt[1] if m > 1 else 0
    cdef floating w2 = wt[2] if m > 2 else 0
    cdef floating w3 = wt[3] if m > 3 else 0
    cdef floating w4 = wt[4] if m > 4 else 0
    cdef const floating* s0 = src + off[0]
    cdef const floating* s1 = src + (off[1] if m > 1 else 0)
    cdef const floating* s2 = src + (off[2] if m > 2 else 0)
    cdef const floating* s3 = src + (off[3] if m > 3 else 0)
    cdef const floating* s4 = src + (off[4] if m > 4 else 0)
    if m == 5:
        for q in range(length):
            acc[q] = (acc[q] if add else b) + w0 * s0[q] + w1 * s1[q] + w2 * s2[q] + w3 * s3[q] + w4 * s4[q]
    elif m == 4:
        for q in range(length):
            acc[q] = (acc[q] if add else b) + w0 * s0[q] + w1 * s1[q] + w2 * s2[q] + w3 * s3[q]
    elif m == 3:
        for q in range(length):
            acc[q] = (acc[q] if add else b) + w0 * s0[q] + w1 * s1[q] + w2 * s2[q]
    elif m == 2:
        for q in range(length):
            acc[q] = (acc[q] if add else b) + w0 * s0[q] + w1 * s1[q]
    else:
        for q in range(length):
            acc[q] = (acc[q] if add else b) + w0 * s0[q]


cdef int conv2d_direct_impl(const floating* x, const floating* w, const floating* bias, bint has_bias,
                            floating* out, Py_ssize_t n, Py_ssize_t cin, Py_ssize_t h, Py_ssize_t wd,
                            Py_ssize_t cout, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t oh_n,
                            Py_ssize_t ow_n, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
                            Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups, int num_threads) except -1:
    cdef Py_ssize_t cig = cin // groups, cog = cout // groups, taps = kh * kw, phases = sh * sw
    # tile geometry, fixed for the call: (rt, ct) output pixels read ry_n rows of owp columns in
    # each stride phase of their input block; accumulator rows have the same pitch
    cdef Py_ssize_t ct = ow_n if ow_n < TILE_COLS // sw else TILE_COLS // sw
    if ct < 1:
        ct = 1
    cdef Py_ssize_t owp = ct + (kw - 1) * dw // sw, extra = (kh - 1) * dh // sh
    cdef Py_ssize_t rt = BLOCK_ELEMS // (phases * owp) - extra
    if rt > TILE_PIXELS // ct:
        rt = TILE_PIXELS // ct
    if rt > oh_n:
        rt = oh_n
    if rt < 1:
        rt = 1
    cdef Py_ssize_t ry_n = rt + extra
    # a pass over the tile reads up to (kw-1)*dw//sw elements past the block: keep them allocated
    cdef Py_ssize_t blk_len = phases * ry_n * owp + (kw - 1) * dw // sw, acc_len = rt * owp
    cdef Py_ssize_t row_tiles = ceil_div(oh_n, rt), col_tiles = ceil_div(ow_n, ct)
    cdef Py_ssize_t tiles = row_tiles * col_tiles
    cdef Py_ssize_t items = n * groups * tiles
    cdef int nt = team_size(num_threads, items, n * cout * oh_n * ow_n * cig * taps)
    cdef Py_ssize_t* off = <Py_ssize_t*>malloc(taps * sizeof(Py_ssize_t))
    cdef floating* scratch = <floating*>malloc(nt * (blk_len + cog * acc_len) * sizeof(floating))
    cdef Py_ssize_t t, i, j
    if off == NULL or scratch == NULL:
        free(off)
        free(scratch)
        raise MemoryError("cannot allocate the kernel's scratch memory")
    for t in range(taps):
        i = t // kw
        j = t - i * kw
        off[t] = ((((i * dh) % sh) * sw + (j * dw) % sw) * ry_n + i * dh // sh) * owp + j * dw // sw
    cdef Py_ssize_t item, plane, img, g, co, c, tile, r0, c0, nr, nc, ci, r, m, p
    cdef Py_ssize_t npass = ceil_div(taps, MAX_PASS_TAPS)
    cdef int tid
    cdef floating b
    cdef floating* blk
    cdef floating* acc
    cdef const floating* wc
    # thread-private inside the region; initialised so the compiler sees a value
    tid = 0
    blk = acc = NULL
    with nogil, parallel(num_threads=nt):
        tid = omp_get_thread_num()
        blk = scratch + tid * (blk_len + cog * acc_len)
        acc = blk + blk_len
        # zeroed by its thread: the slack past a block is read (into discarded columns), never written
        memset(blk, 0, (blk_len + cog * acc_len) * sizeof(floating))
        for item in prange(items, schedule="dynamic"):
            plane = item // tiles
            img = plane // groups
            g = plane - img * groups
            tile = item - plane * tiles
            r0 = (tile // col_tiles) * rt
            c0 = (tile % col_tiles) * ct
            nr = oh_n - r0 if oh_n - r0 < rt else rt
            nc = ow_n - c0 if ow_n - c0 < ct else ct
            for ci in range(cig):
                # one block serves every output channel of the group
                load_phases(blk, x + (img * cin + g * cig + ci) * h * wd, h, wd, r0 * sh - ph, c0 * sw - pw,
                            sh, sw, ry_n, nr + extra, owp)
                for c in range(cog):
                    co = g * cog + c
                    b = bias[co] if has_bias else 0
                    wc = w + (co * cig + ci) * taps
                    t = 0
                    for p in range(npass):
                        # balanced passes: taps split as evenly as MAX_PASS_TAPS allows
                        m = (taps * (p + 1)) // npass - t
                        tap_pass(acc + c * acc_len, ci > 0 or p > 0, b, blk, off + t, wc + t, m, nr * owp)
                        t = t + m
            for c in range(cog):
                for r in range(nr):
                    memcpy(out + ((img * cout + g * cog + c) * oh_n + r0 + r) * ow_n + c0,
                           acc + c * acc_len + r * owp, nc * sizeof(floating))
    free(off)
    free(scratch)
    return 0


def conv2d_direct(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] w,
                  const floating[::1] bias, floating[:, :, :, ::1] out,
                  int sh, int sw, int ph, int pw, int dh, int dw, int groups, int num_threads):
    """Same arguments and contract as convcore._kernels.conv.conv2d."""
    conv2d_direct_impl(&x[0, 0, 0, 0], &w[0, 0, 0, 0], &bias[0] if bias.shape[0] else NULL,
                       bias.shape[0] != 0, &out[0, 0, 0, 0], x.shape[0], x.shape[1], x.shape[2],
                       x.shape[3], w.shape[0], w.shape[2], w.shape[3], out.shape[2], out.shape[3],
                       sh, sw, ph, pw, dh, dw, groups, num_threads)
