"""conv_transpose2d as dense correlations per output phase: micro-kernel GEMMs, no col2im.

Contract: convcore/_kernels/__init__.py; the phase algebra: _transpose_phases.pxd. Stride 1 is
one phase, a "full" correlation with the flipped kernel and swapped channels. Stride s > 1 splits
the output into s_h*s_w phases (sub-pixel decomposition): each is a dense correlation of the input
with a sub-kernel (dilated by d/gcd(s, d) when d > 1), so there is no zero insertion and no
scatter-add.

Phases of one class pair share their source: their packed weights are stacked into one
(members*C_out/g, C_in/g*taps) matrix, so one GEMM per tile gives all of them. The GEMMs read
one of four sources (convcore._kernels._microkernel):

* the input plane itself, when every class reads it unshifted with one tap (kernel == stride, a
  1x1 kernel): it already is the column matrix;
* a block: a zero-padded copy of the input rows the tile reads, per input channel, with every
  tap a fixed offset (as in conv_blocked). Read by pixel_gemm where every class pair's output
  channels fill its vectors (pixels are its broadcast rows: no lanes on padding columns, any
  row width, results stored straight into their output positions): DCGAN's 8x8 planes 1.23x
  faster than im2col. Else by gather_gemm (pixels are its vector lanes) for reductions up to
  BLOCK_MAX_K on rows at least a register block wide: it copies each input value about once
  per item where im2col writes it once per tap and phase, 3x faster on RGB output (3
  channels, 4x4 kernel, stride 2);
* im2col blocks per class pair otherwise (few channels with long reductions or narrow rows),
  for the packed GEMM.

All give the micro-kernel the same values in the same order, so the results do not depend on
the source. A permuted write (pixel_gemm: its stores) adds the bias and puts every result in
its strided output position; each output element is written exactly once (phases without taps
get the bias).

A work item is (group, tile of consecutive pixels of the phase grid (image, qy, qx), y class,
block of output channels). With im2col, tiles span images when an image has few pixels per
phase, so small images still make wide GEMMs; the other sources take whole rows of one image.
Output channels are split only when the tiles give too few items (batch 1). Tile sizes depend
on shapes only: the same bits for any thread count.
"""
from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.limits cimport INT_MAX
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy, memset

from convcore._kernels._microkernel cimport (CCB_MR, PIXEL_MIN_K, PIXEL_W_BYTES, gather_gemm, nr_of, pack_rows,
                                             panel_gemm, panel_len, pixel_gemm, pixel_lanes_full, vector_malloc)
from convcore._kernels._openmp cimport omp_get_thread_num
from convcore._kernels._tiling cimport MIN_ROWS, MIN_TILE, WANT_ITEMS, ceil_div, clamp, row_block, team_size
from convcore._kernels._transpose_phases cimport Axis, axis_init, axis_free

cdef extern from *:
    """
    #include <stddef.h>
    /* dst[ns*q + p] = s[p][q] + b for q < n, p < ns (s[p] NULL: b alone): the ns x phases of an
       output row (stride ns = 2, 4 or 8), stored front to back in whole vectors. The phases'
       vectors are interleaved by log2(ns) rounds of two-source shuffles (a perfect shuffle:
       round r zips vector j with vector j + ns/2). Element by element, the strided stores cost
       more than the GEMM (half of a 16 -> 33 channel 3x3 stride-2 layer). */
    #if defined(__clang__) || __GNUC__ >= 12
    #define CCI_VECTOR(VL, NS, LO, HI)                                                        \
        V bv = (V){0} + b;                                                                    \
        for (; q + VL <= n; q += VL) {                                                        \
            V v[NS], t[NS];                                                                   \
            for (int p = 0; p < NS; p++)                                                      \
                v[p] = bv;                                                                    \
            for (int p = 0; p < NS; p++)                                                      \
                if (s[p])                                                                     \
                    v[p] = *(const V*)(s[p] + q) + bv;                                        \
            for (int h = 1; h < NS; h *= 2) {                                                 \
                for (int j = 0; j < NS / 2; j++) {                                            \
                    t[2 * j] = __builtin_shufflevector(v[j], v[j + NS / 2], CCI_LIST LO);     \
                    t[2 * j + 1] = __builtin_shufflevector(v[j], v[j + NS / 2], CCI_LIST HI); \
                }                                                                             \
                for (int p = 0; p < NS; p++)                                                  \
                    v[p] = t[p];                                                              \
            }                                                                                 \
            for (int p = 0; p < NS; p++)                                                      \
                *(V*)(dst + NS * q + p * VL) = v[p];                                          \
        }
    #else
    #define CCI_VECTOR(VL, NS, LO, HI)
    #endif
    #define CCI_LIST(...) __VA_ARGS__
    #define CCI_NS(T, SUF, VL, NS, LO, HI)                                                    \
    static inline void cci_interleave##NS##_##SUF(T* dst, const T* const* s, T b, ptrdiff_t n) { \
        typedef T V __attribute__((vector_size(VL * sizeof(T)), aligned(sizeof(T)), may_alias)); \
        ptrdiff_t q = 0;                                                                      \
        CCI_VECTOR(VL, NS, LO, HI)                                                            \
        for (; q < n; q++)                                                                    \
            for (int p = 0; p < NS; p++)                                                      \
                dst[NS * q + p] = s[p] ? s[p][q] + b : b;                                     \
    }
    #define CCI_DEF(T, SUF, VL, LO, HI)                                                       \
        CCI_NS(T, SUF, VL, 2, LO, HI) CCI_NS(T, SUF, VL, 4, LO, HI) CCI_NS(T, SUF, VL, 8, LO, HI) \
    static inline void cci_interleave_##SUF(T* dst, const T* const* s, int ns, T b, ptrdiff_t n) { \
        if (ns == 2) cci_interleave2_##SUF(dst, s, b, n);                                     \
        else if (ns == 4) cci_interleave4_##SUF(dst, s, b, n);                                \
        else cci_interleave8_##SUF(dst, s, b, n);                                             \
    }
    CCI_DEF(float, f, 16, (0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23),
                          (8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31))
    CCI_DEF(double, d, 8, (0, 8, 1, 9, 2, 10, 3, 11), (4, 12, 5, 13, 6, 14, 7, 15))
    """
    void cci_interleave_f(float* dst, const float* const* s, int ns, float b, Py_ssize_t n) noexcept nogil
    void cci_interleave_d(double* dst, const double* const* s, int ns, double b, Py_ssize_t n) noexcept nogil


cdef inline void interleave(floating* dst, const floating** s, int ns, floating b, Py_ssize_t n) noexcept nogil:
    """dst[ns*q + p] = s[p][q] + b (s[p] NULL: b) for q < n, p < ns; ns: 2, 4 or 8."""
    if floating is float:
        cci_interleave_f(dst, s, ns, b, n)
    else:
        cci_interleave_d(dst, s, ns, b, n)


# column block + GEMM results per thread: a quarter of L2, so that they and the output lines
# they fill stay cached (measured best for shallow GEMMs such as 16 -> 33 channels, 3x3 s2)
cdef Py_ssize_t _tile_bytes = 256 * 1024

cdef enum:
    BLOCK_MAX_K = 640        # longest reduction read from the block source (as in conv_blocked)
    BLOCK_BYTES = 512 * 1024  # block source + results per thread: about half of L2
    DEEP_K = 256  # GEMMs at least this deep are compute-bound (DCGAN-like layers): make them ...
    WIDE_N = 256  # ... this many pixels wide (their weights are re-read per tile; 256 measured 3%
                  # faster than 512 on DCGAN: the im2col block stays nearer L2)


def set_tile_bytes(Py_ssize_t nbytes):
    """Scratch budget per thread (for tests of tiling invariance); returns the old one."""
    global _tile_bytes
    old = _tile_bytes
    _tile_bytes = max(nbytes, 1)
    return old


cdef struct Geometry:
    Py_ssize_t n, cin, h, wd, cout, kh, kw, oh_n, ow_n, sh, sw, cig, cog
    Py_ssize_t qym, qxm      # phase grid: the largest class of each axis
    Py_ssize_t npairs        # class pairs (cy, cx), cy major
    bint has_bias
    # block source (pitch > 0): per item a zero-padded copy of the input rows it reads, brows
    # rows of `pitch` columns per input channel, column c holding input column c_lo + c
    Py_ssize_t pitch, c_lo, brows, blk_len, k_max
    Py_ssize_t* koff         # per pair, k_max offsets of its taps (ci, ty, tx) in the block
    bint pixel_rows          # the block source read by pixel_gemm (pixels broadcast) ...
    bint in_place            # ... in the input itself (only direct pairs)
    Py_ssize_t bh            # ... whose packed weights come in blocks of NR rows, else MR


cdef inline Py_ssize_t padded(Py_ssize_t m, Py_ssize_t bh) noexcept nogil:
    """Rows of a packed weight matrix of m rows: whole blocks of bh."""
    return ceil_div(m, bh) * bh


cdef inline bint pair_direct(const Axis* ay, const Axis* ax, Py_ssize_t cy, Py_ssize_t cx,
                             const Geometry* ge) noexcept nogil:
    """One tap, no shift, and the phase grid is the input grid: the input is the column matrix."""
    return (ay.taps[cy] == 1 and ax.taps[cx] == 1 and ay.base[cy] == 0 and ax.base[cx] == 0
            and ay.q[cy] == ge.h and ax.q[cx] == ge.wd and ge.qym == ge.h and ge.qxm == ge.wd)


cdef enum:
    NARROW = 16  # row segments up to this many pixels are gathered by one select loop
    PACK_CI = 16  # input channels per packing task: the packed rows they fill stay in L2
    PACK_MAX_KK = 256  # kernel taps up to which pack_by_channel transposes through a stack buffer
    MAX_BH = 32  # the most rows of a packed weight block (NR float32 with AVX-512)
    SOURCE_AUTO = 0
    SOURCE_IM2COL = 1
    SOURCE_BLOCK = 2
    SOURCE_PIXEL_ROWS = 3

SOURCES = ("auto", "im2col", "block", "pixel rows")


cdef void pack_block(const floating* w, floating* wp, const Axis* ay, const Axis* ax,
                     const Py_ssize_t* woff, const Geometry* ge, Py_ssize_t g,
                     Py_ssize_t c0, Py_ssize_t c1) noexcept nogil:
    """Input channels c0..c1-1 of group g's packed weights. Class pair pr holds, per group, a
    (cog*members, cig*Ty*Tx) matrix: row (co, member), column (ci, ty, tx), value
    w[g*cig + ci, co, k0y + ty*ksy, k0x + tx*ksx], packed for panel_gemm (rows past the end
    zero), in blocks of ge.bh rows. Rows co-major, so that a block of output channels is a
    block of rows."""
    cdef Py_ssize_t kk = ge.kh * ge.kw, pr, cy, cx, ty_n, tx_n, nmx, nmem, kdim, tt, m, rb, nr, r
    cdef Py_ssize_t row, co, mem, ci, ty, tx, t, dy = ay.ks * ge.kw, dx = ax.ks, cstep = ge.cog * kk
    cdef Py_ssize_t roff[MAX_BH]  # where each row of a block reads its (co, member) kernel tap
    cdef Py_ssize_t bh = ge.bh
    cdef floating* dst
    for pr in range(ge.npairs):
        cy = pr // ax.ncls
        cx = pr - cy * ax.ncls
        ty_n = ay.taps[cy]
        tx_n = ax.taps[cx]
        tt = ty_n * tx_n
        nmx = ax.first[cx + 1] - ax.first[cx]
        nmem = (ay.first[cy + 1] - ay.first[cy]) * nmx
        kdim = ge.cig * tt
        m = nmem * ge.cog
        # one packed row block at a time: its columns c0*tt .. c1*tt - 1 are one stretch of
        # memory, written front to back, and its rows read neighbouring output channels
        for rb in range(ceil_div(m, bh) if kdim else 0):
            nr = min(bh, m - rb * bh)
            for r in range(nr):
                row = rb * bh + r
                co = row // nmem
                mem = row - co * nmem
                roff[r] = ((g * ge.cig * ge.cog + co) * kk + ay.k0[ay.first[cy] + mem // nmx] * ge.kw
                           + ax.k0[ax.first[cx] + mem % nmx])
            dst = wp + woff[pr] + g * padded(m, bh) * kdim + (rb * kdim + c0 * tt) * bh
            for ci in range(c0, c1):
                for ty in range(ty_n):
                    for tx in range(tx_n):
                        t = ci * cstep + ty * dy + tx * dx
                        for r in range(nr):
                            dst[r] = w[roff[r] + t]
                        for r in range(nr, bh):  # rows past the end of the last block
                            dst[r] = 0
                        dst = dst + bh


cdef bint single_members(const Axis* ay, const Axis* ax) noexcept nogil:
    """Whether every class has one member phase, so that a packed row is one output channel."""
    cdef Py_ssize_t c
    for c in range(ay.ncls):
        if ay.first[c + 1] - ay.first[c] != 1:
            return False
    for c in range(ax.ncls):
        if ax.first[c + 1] - ax.first[c] != 1:
            return False
    return True


cdef void pack_by_channel(const floating* w, floating* wp, const Axis* ay, const Axis* ax,
                          const Py_ssize_t* woff, const Geometry* ge, Py_ssize_t g,
                          Py_ssize_t c0, Py_ssize_t c1) noexcept nogil:
    """pack_block's result where every class has one member phase and KH*KW <= PACK_MAX_KK: each
    (input channel, block of bh output channels) reads its bh*KH*KW weights (one stretch of
    memory) once, and every class pair takes its taps' bh-vectors from them: blocks of MR
    through a stack buffer, transposed by vector shuffles; blocks of NR gathered straight into
    place (through the buffer and a copy, a 4x4 stride-2 layer over 256 channels on 8x8 at
    batch 1 took 1.8x as long). (pack_block's pair-by-pair gathers re-read the same lines once
    per pair: 41% of a batch-1 vocoder layer.)"""
    cdef Py_ssize_t kk = ge.kh * ge.kw, bh = ge.bh, mp = padded(ge.cog, bh), rb, ci, pr, cy, cx, ty, tx, tt
    cdef Py_ssize_t kdim, ky, nr, r, kp
    cdef floating tmp[PACK_MAX_KK * 16]  # kernel tap kp of row r at kp*MR + r (MR <= 16)
    cdef floating* dst
    cdef const floating* src
    for rb in range(ceil_div(ge.cog, bh)):
        nr = min(bh, ge.cog - rb * bh)
        for ci in range(c0, c1):
            # the block's bh output channels are bh consecutive rows of KH*KW weights
            src = w + ((g * ge.cig + ci) * ge.cog + rb * bh) * kk
            if bh == CCB_MR:
                pack_rows(src, kk, nr, kk, tmp, CCB_MR)
            for pr in range(ge.npairs):
                cy = pr // ax.ncls
                cx = pr - cy * ax.ncls
                tt = ay.taps[cy] * ax.taps[cx]
                kdim = ge.cig * tt
                dst = wp + woff[pr] + g * mp * kdim + (rb * kdim + ci * tt) * bh
                for ty in range(ay.taps[cy]):
                    ky = ay.k0[ay.first[cy]] + ty * ay.ks
                    for tx in range(ax.taps[cx]):
                        kp = ky * ge.kw + ax.k0[ax.first[cx]] + tx * ax.ks
                        if bh == CCB_MR:
                            memcpy(dst, tmp + kp * bh, bh * sizeof(floating))
                        else:
                            for r in range(nr):
                                dst[r] = src[r * kk + kp]
                            for r in range(nr, bh):
                                dst[r] = 0
                        dst = dst + bh


cdef Py_ssize_t segments(const Axis* ay, Py_ssize_t cy, const Geometry* ge, Py_ssize_t v0,
                         Py_ssize_t v1, Py_ssize_t* seg) noexcept nogil:
    """Row segments of grid tile v0..v1-1 inside y class cy: seg[4*i:4*i+4] = (img, qy, qx0, qx1);
    returns their count. Each x class clips qx1 to its own length. Computed once per item, so
    that the column and output loops run without divisions."""
    cdef Py_ssize_t v = v0, ns = 0, row, img, qx0, qx1
    while v < v1:
        row = v // ge.qxm
        qx0 = v - row * ge.qxm
        qx1 = ge.qxm if ge.qxm - qx0 < v1 - v else qx0 + (v1 - v)
        v = v + (qx1 - qx0)
        img = row // ge.qym
        if row - img * ge.qym < ay.q[cy]:
            seg[4 * ns] = img
            seg[4 * ns + 1] = row - img * ge.qym
            seg[4 * ns + 2] = qx0
            seg[4 * ns + 3] = qx1
            ns += 1
    return ns


cdef inline Py_ssize_t clipped(const Py_ssize_t* seg, Py_ssize_t qx_n) noexcept nogil:
    """Pixels of segment seg inside an x class of qx_n positions."""
    cdef Py_ssize_t e = seg[3] if seg[3] < qx_n else qx_n
    return e - seg[2] if e > seg[2] else 0


cdef void im2col(const floating* x, const Axis* ay, const Axis* ax, Py_ssize_t cy,
                 Py_ssize_t cx, const Geometry* ge, Py_ssize_t g, const Py_ssize_t* seg,
                 Py_ssize_t ns, floating* col) noexcept nogil:
    """col[(ci, ty, tx), j] = x[img, g*cig + ci, qy + by - ty*ddy, qx + bx - tx*ddx] (0 outside)
    for the pixels j = (img, qy, qx) of the segments inside class pair (cy, cx); each column row
    is written front to back."""
    cdef Py_ssize_t ci, ty, tx, i, img, qy, qx, qx0, e, iy, offx, a, b, qx_n = ax.q[cx]
    cdef floating* d = col
    cdef const floating* sx
    for ci in range(ge.cig):
        for ty in range(ay.taps[cy]):
            for tx in range(ax.taps[cx]):
                offx = ax.base[cx] - tx * ax.dd
                for i in range(ns):
                    img = seg[4 * i]
                    qy = seg[4 * i + 1]
                    qx0 = seg[4 * i + 2]
                    e = seg[4 * i + 3] if seg[4 * i + 3] < qx_n else qx_n
                    if qx0 >= e:
                        continue
                    iy = qy + ay.base[cy] - ty * ay.dd
                    # qx whose input column lies inside the row: a <= qx < b
                    a = -offx if -offx > qx0 else qx0
                    b = ge.wd - offx if ge.wd - offx < e else e
                    d = d - qx0
                    if iy < 0 or iy >= ge.h or a >= b:
                        a = b = qx0
                        sx = x
                    else:
                        sx = x + ((img * ge.cin + g * ge.cig + ci) * ge.h + iy) * ge.wd + offx
                    if e - qx0 <= NARROW:
                        # one pass that selects the value or 0: short rows cost no calls to
                        # memset and no vector-loop set-up (tiny 1-D calls: 6-20% faster)
                        for qx in range(qx0, e):
                            d[qx] = sx[qx] if a <= qx < b else 0
                    else:
                        for qx in range(qx0, a):
                            d[qx] = 0
                        for qx in range(a, b):
                            d[qx] = sx[qx]
                        for qx in range(b, e):
                            d[qx] = 0
                    d = d + e


cdef void write_out(const floating* cbufs, Py_ssize_t c_len, const Py_ssize_t* nps,
                    Py_ssize_t* js, const floating** srcs, Py_ssize_t* ph, Py_ssize_t* ends,
                    const floating* bias, floating* out, const Axis* ay, const Axis* ax,
                    Py_ssize_t cy, const Geometry* ge, Py_ssize_t g, Py_ssize_t co0, Py_ssize_t co1,
                    const Py_ssize_t* seg, Py_ssize_t ns) noexcept nogil:
    """out[img, g*cog + co, ay + qy*sh, ax + qx*sw] = c[(co - co0, member), j] + bias for the
    output channels co0..co1-1 and the pixels j = (img, qy, qx) of the segments, where c is x
    class cx's GEMM result (cbufs + cx*c_len, rows nps[cx] long), or the bias alone for a class
    without taps. Every x phase of an output row is written before the next row; srcs, ph,
    ends: room for the stride_w x phases. With the block source (ge.pitch > 0) segment i's
    pixels start at i*pitch of a result row, else right after the previous segment's."""
    cdef Py_ssize_t fy = ay.first[cy], nmy = ay.first[cy + 1] - ay.first[cy]
    cdef Py_ssize_t i, img, qy, qx0, e, my, mi, nmx, co, qx, oy, cx, k, sw = ge.sw
    cdef floating b
    cdef floating* row
    cdef floating* dst
    cdef const floating* src
    cdef const floating* order[8]
    for cx in range(ax.ncls):
        js[cx] = 0
    for i in range(ns):
        img = seg[4 * i]
        qy = seg[4 * i + 1]
        qx0 = seg[4 * i + 2]
        for my in range(nmy):
            oy = ay.phase[fy + my] + qy * ge.sh
            for co in range(co0, co1):
                b = bias[g * ge.cog + co] if ge.has_bias else 0
                row = out + ((img * ge.cout + g * ge.cog + co) * ge.oh_n + oy) * ge.ow_n
                k = 0
                for cx in range(ax.ncls):
                    nmx = ax.first[cx + 1] - ax.first[cx]
                    for mi in range(nmx):
                        # phase k: its results (NULL: bias only), output column and end
                        srcs[k] = NULL
                        if ay.taps[cy] and ax.taps[cx]:
                            srcs[k] = (cbufs + cx * c_len + (((co - co0) * nmy + my) * nmx + mi) * nps[cx]
                                       + js[cx] - qx0)
                        ph[k] = ax.phase[ax.first[cx] + mi]
                        ends[k] = qx0 + clipped(seg + 4 * i, ax.q[cx])
                        k += 1
                if k == sw and (sw == 2 or sw == 4 or sw == 8):
                    # every phase of the row interleaved, stored front to back (a phase without
                    # taps stores the bias itself, as the general loop below does); phases
                    # shorter than others by a position leave a tail
                    e = ends[0]
                    for k in range(sw):
                        e = min(e, ends[k])
                        order[ph[k]] = srcs[k] + qx0 if srcs[k] != NULL else NULL
                    interleave(row + sw * qx0, order, <int>sw, b, e - qx0)
                    for k in range(sw):
                        for qx in range(e, ends[k]):
                            row[qx * sw + ph[k]] = b if srcs[k] == NULL else srcs[k][qx] + b
                    continue
                for k in range(k):
                    dst = row + ph[k]
                    src = srcs[k]
                    if src == NULL:
                        for qx in range(qx0, ends[k]):
                            dst[qx * sw] = b
                    elif sw == 1:
                        for qx in range(qx0, ends[k]):
                            dst[qx] = src[qx] + b
                    else:
                        for qx in range(qx0, ends[k]):
                            dst[qx * sw] = src[qx] + b
        for cx in range(ax.ncls):
            js[cx] += ge.pitch if ge.pitch else clipped(seg + 4 * i, ax.q[cx])


cdef void load_block(const floating* x, const Axis* ay, Py_ssize_t cy, const Geometry* ge,
                     Py_ssize_t g, Py_ssize_t img, Py_ssize_t qy0, Py_ssize_t nrows, floating* blk) noexcept nogil:
    """blk[(ci*brows + r)*pitch + c] = x[img, g*cig + ci, iy0 + r, c_lo + c] (0 outside the input)
    for the rows r that y class cy reads for grid rows qy0 .. qy0+nrows-1, iy0 = qy0 + base -
    (taps-1)*dd."""
    cdef Py_ssize_t rows = nrows + (ay.taps[cy] - 1) * ay.dd
    cdef Py_ssize_t iy0 = qy0 + ay.base[cy] - (ay.taps[cy] - 1) * ay.dd
    cdef Py_ssize_t a = clamp(-ge.c_lo, 0, ge.pitch), e = clamp(ge.wd - ge.c_lo, a, ge.pitch)
    cdef Py_ssize_t ci, r, c, iy
    cdef floating* d
    cdef const floating* sx
    for ci in range(ge.cig):
        for r in range(rows):
            d = blk + (ci * ge.brows + r) * ge.pitch
            iy = iy0 + r
            if iy < 0 or iy >= ge.h:
                memset(d, 0, ge.pitch * sizeof(floating))
                continue
            sx = x + ((img * ge.cin + g * ge.cig + ci) * ge.h + iy) * ge.wd + ge.c_lo
            for c in range(a):
                d[c] = 0
            memcpy(d + a, sx + a, (e - a) * sizeof(floating))
            for c in range(e, ge.pitch):
                d[c] = 0


cdef void pixel_rows_item(const floating* blk, const floating* wp, const floating* bias, floating* out,
                          const Axis* ay, const Axis* ax, const Geometry* ge, const Py_ssize_t* woff,
                          Py_ssize_t g, Py_ssize_t cy, Py_ssize_t co0, Py_ssize_t co1, const Py_ssize_t* seg,
                          Py_ssize_t ns, Py_ssize_t* qoff, Py_ssize_t* oo, Py_ssize_t* lo,
                          floating* lb) noexcept nogil:
    """An item of the block source `blk` read by pixel_gemm: its results go straight to their
    output positions with the bias added (write_out's values, without its pass); phases without
    taps get the bias. qoff, oo: room for the tile's pixels; lo, lb: for its GEMM rows."""
    cdef Py_ssize_t fy = ay.first[cy], nmy = ay.first[cy + 1] - ay.first[cy], plane = ge.oh_n * ge.ow_n
    cdef Py_ssize_t cx, fx, nmx, nmem, kdim, np_, i, qx, qn, m, j, co, mem, base
    cdef floating* row
    for cx in range(ax.ncls):
        fx = ax.first[cx]
        nmx = ax.first[cx + 1] - fx
        nmem = nmy * nmx
        kdim = ge.cig * ay.taps[cy] * ax.taps[cx]
        # pixels (segment i = grid row qy of image img, column qx): where the block holds them
        # and where their output (phase (0, 0), channel 0) lies
        np_ = 0
        for i in range(ns):
            base = seg[4 * i] * ge.cout * plane + seg[4 * i + 1] * ge.sh * ge.ow_n
            qn = clipped(seg + 4 * i, ax.q[cx])
            for qx in range(qn):
                qoff[np_ + qx] = i * ge.pitch + qx
                oo[np_ + qx] = base + qx * ge.sw
            np_ = np_ + qn
        # GEMM rows (co, member): their output channel and phase, and bias
        m = (co1 - co0) * nmem
        for j in range(m):
            co = g * ge.cog + co0 + j // nmem
            mem = j % nmem
            lo[j] = co * plane + ay.phase[fy + mem // nmx] * ge.ow_n + ax.phase[fx + mem % nmx]
            lb[j] = bias[co] if ge.has_bias else 0
        if kdim == 0:
            for j in range(m):
                row = out + lo[j]
                for i in range(np_):
                    row[oo[i]] = lb[j]
            continue
        pixel_gemm(m, np_, kdim, wp + woff[cy * ax.ncls + cx] + (g * padded(nmem * ge.cog, ge.bh) + co0 * nmem) * kdim,
                   blk, ge.koff + (cy * ax.ncls + cx) * ge.k_max, qoff, oo, out, lo, lb, False)


cdef void run_items(const floating* x, const floating* wp, const floating* bias, floating* out,
                    const Axis* ay, const Axis* ax, const Geometry* ge, const Py_ssize_t* woff,
                    floating* scratch, Py_ssize_t col_len, Py_ssize_t c_len, Py_ssize_t* segs,
                    const floating** srcs, Py_ssize_t seg_cap, Py_ssize_t q_cap, Py_ssize_t lane_len,
                    Py_ssize_t items, Py_ssize_t nseg,
                    Py_ssize_t seg_len, Py_ssize_t tps, Py_ssize_t tile, Py_ssize_t cob,
                    int nt) noexcept:
    cdef Py_ssize_t item, g, rest, seg, t, v0, v1, pr, cy, cx, np_, kdim, m, img, ns, i
    cdef Py_ssize_t nmb = ceil_div(ge.cog, cob), mb, co0, co1, nmem
    cdef Py_ssize_t per_thread = col_len + ax.ncls * c_len + panel_len(<floating>0) + lane_len
    cdef Py_ssize_t* sg
    cdef Py_ssize_t* nps
    cdef Py_ssize_t* qoff
    cdef floating* col
    cdef floating* cbufs
    cdef floating* panel
    cdef floating* lb
    cdef const floating* bmat
    cdef const floating* wk
    cdef Py_ssize_t ldb
    cdef int tid
    tid = 0  # thread-private inside the region; initialised so the compiler sees a value
    with nogil, parallel(num_threads=nt):
        tid = omp_get_thread_num()
        # the thread's scratch: col (the block source, or the im2col block of the current x
        # class), the GEMM results of every x class, the column panel, pixel_gemm's lane biases;
        # the segments, write_out's tables, pixel_gemm's pixel and lane offsets
        col = scratch + tid * per_thread
        cbufs = col + col_len
        panel = cbufs + ax.ncls * c_len
        lb = panel + panel_len(<floating>0)
        sg = segs + tid * (seg_cap + 2 * ax.ncls + 2 * ge.sw + 2 * q_cap + lane_len)
        nps = sg + seg_cap
        qoff = nps + 2 * ax.ncls + 2 * ge.sw
        if ge.pitch:
            # zeroed by its thread: lanes past the block source's loaded rows are read (into
            # discarded results), never written
            memset(col, 0, per_thread * sizeof(floating))
        # an item is (group, segment, tile, y class, block of output channels): it computes
        # every x class of its rows for those channels
        for item in prange(items, schedule="dynamic"):
            mb = item % nmb
            rest = item // nmb
            co0 = mb * cob
            co1 = min(co0 + cob, ge.cog)
            cy = rest % ay.ncls
            rest = rest // ay.ncls
            t = rest % tps
            rest = rest // tps
            seg = rest % nseg
            g = rest // nseg
            v0 = seg * seg_len + t * tile
            v1 = min(v0 + tile, (seg + 1) * seg_len)
            ns = segments(ay, cy, ge, v0, v1, sg)
            if ns == 0:
                continue
            if ge.in_place:
                # segments are consecutive whole grid rows of one image, the input's rows
                pixel_rows_item(x + ((sg[0] * ge.cin + g * ge.cig) * ge.h + sg[1]) * ge.wd, wp, bias, out, ay,
                                ax, ge, woff, g, cy, co0, co1, sg, ns, qoff, qoff + q_cap, qoff + 2 * q_cap, lb)
                continue
            if ge.pitch:
                # segments are consecutive whole grid rows of one image
                load_block(x, ay, cy, ge, g, sg[0], sg[1], ns, col)
            if ge.pixel_rows:
                pixel_rows_item(col, wp, bias, out, ay, ax, ge, woff, g, cy, co0, co1, sg, ns, qoff,
                                qoff + q_cap, qoff + 2 * q_cap, lb)
                continue
            for cx in range(ax.ncls):
                np_ = 0
                for i in range(ns):
                    np_ = np_ + clipped(sg + 4 * i, ax.q[cx])
                nps[cx] = np_
                pr = cy * ax.ncls + cx
                kdim = ge.cig * ay.taps[cy] * ax.taps[cx]
                if np_ == 0 or kdim == 0:
                    continue
                nmem = (ay.first[cy + 1] - ay.first[cy]) * (ax.first[cx + 1] - ax.first[cx])
                # rows (co, member) of channels co0..co1-1: co0 is a multiple of the block height,
                # so they start a packed row block
                m = (co1 - co0) * nmem
                wk = wp + woff[pr] + (g * padded(nmem * ge.cog, ge.bh) + co0 * nmem) * kdim
                if ge.pitch:
                    nps[cx] = ceil_div(ns * ge.pitch, nr_of(<floating>0)) * nr_of(<floating>0)
                    gather_gemm(m, ns * ge.pitch, kdim, wk, 0, NULL, col, ge.koff + pr * ge.k_max,
                                cbufs + cx * c_len, nps[cx])
                    continue
                if pair_direct(ay, ax, cy, cx, ge):
                    # the tile lies in one image (segments are images) and covers consecutive pixels
                    img = v0 // seg_len
                    bmat = x + (img * ge.cin + g * ge.cig) * seg_len + (v0 - img * seg_len)
                    ldb = seg_len
                else:
                    im2col(x, ay, ax, cy, cx, ge, g, sg, ns, col)
                    bmat = col
                    ldb = np_
                panel_gemm(m, np_, kdim, wk, 0, NULL, bmat, ldb, cbufs + cx * c_len, np_, panel)
            write_out(cbufs, c_len, nps, nps + ax.ncls, srcs + tid * ge.sw, nps + 2 * ax.ncls,
                      nps + 2 * ax.ncls + ge.sw, bias, out, ay, ax, cy, ge, g, co0, co1, sg, ns)


cdef Py_ssize_t subpixel_tile(Py_ssize_t pixels, Py_ssize_t rows, Py_ssize_t depth,
                              Py_ssize_t itemsize, Py_ssize_t planes) noexcept nogil:
    """Grid pixels per tile: the budget's worth, cut to give about WANT_ITEMS work items; for
    GEMMs of depth >= DEEP_K at least WIDE_N pixels while that fits in 16 budgets; tiles of
    equal size."""
    cdef Py_ssize_t p = _tile_bytes // (rows * itemsize)
    cdef Py_ssize_t spread = ceil_div(pixels, ceil_div(WANT_ITEMS, planes))
    cdef Py_ssize_t wide = 16 * _tile_bytes // (rows * itemsize)
    if spread < p:
        p = spread
    if wide > WIDE_N:
        wide = WIDE_N
    if depth >= DEEP_K and p < wide:
        p = wide
    if p < MIN_TILE:
        p = MIN_TILE
    if p > INT_MAX // rows:  # BLAS takes int sizes
        p = INT_MAX // rows
    if p >= pixels:
        return pixels
    return ceil_div(pixels, ceil_div(pixels, p))


cdef Py_ssize_t block_rows(const Axis* ay, const Axis* ax, Geometry* ge, Py_ssize_t col_rows,
                           Py_ssize_t c_rows, Py_ssize_t planes, Py_ssize_t itemsize,
                           bint gather, bint checks) noexcept nogil:
    """Grid rows per item of the block source, with ge.pitch, c_lo, brows and blk_len set; 0
    (ge.pitch = 0) where it does not fit or (checks) where im2col is the better source for
    gather_gemm. gather: the item's results stay in scratch too (write_out stores them), else
    pixel_gemm stores them."""
    cdef Py_ssize_t cx, cy, c_hi = 0, ext = 0, rt, budget, pitch
    cdef Py_ssize_t nr = nr_of(<float>0) if itemsize == 4 else nr_of(<double>0)
    ge.pitch = 0
    ge.in_place = False
    if col_rows == 0 and not gather:
        # only direct pairs (kernel == stride): pixel_gemm reads the input planes in place, a
        # "block" of all their rows (brows = H). An item takes all of them: items split output
        # channels instead, so that each block of weights is read once per image (2x2 stride 2
        # over 512 channels on 16x16 at batch 1: 1.3x faster than 8 tiles of 2 rows)
        ge.in_place = True
        ge.pitch, ge.c_lo, ge.brows, ge.blk_len = ge.wd, 0, ge.h, 0
        return ge.qym
    # im2col reads long reductions faster (see conv_blocked); rows narrower than a register
    # block would leave most lanes of the micro-kernel idle; with only direct pairs there is
    # nothing to gather
    if col_rows == 0 or (checks and (ge.k_max > BLOCK_MAX_K or ge.qxm < nr)):
        return 0
    ge.c_lo = ge.wd
    for cx in range(ax.ncls):
        if ax.taps[cx]:
            ge.c_lo = min(ge.c_lo, ax.base[cx] - (ax.taps[cx] - 1) * ax.dd)
            c_hi = max(c_hi, ax.q[cx] - 1 + ax.base[cx])
    for cy in range(ay.ncls):
        if ay.taps[cy]:
            ext = max(ext, (ay.taps[cy] - 1) * ay.dd)
    pitch = max(c_hi - ge.c_lo + 1, ge.qxm)
    # the block and the results of every x class in BLOCK_BYTES
    budget = BLOCK_BYTES // (pitch * itemsize) - ge.cig * ext
    rt = budget // (ge.cig + (ax.ncls * c_rows if gather else 0)) if budget > 0 else 0
    # gather_gemm: rows spread over WANT_ITEMS items; pixel_gemm: as many as fit, its items split
    # output channels instead, so that each block of weights is read once per tile (3 times
    # faster on a 4x4 stride-2 layer over 256 channels on 8x8 at batch 1)
    rt = min(rt, ceil_div(ge.qym, ceil_div(WANT_ITEMS, planes)) if gather else ge.qym)
    if rt < 1:
        return 0
    ge.pitch = pitch
    ge.brows = rt + ext
    # the last register block of a row tile reads up to NR lanes and a row past the block
    ge.blk_len = ge.cig * ge.brows * pitch + pitch + nr
    return rt


cdef void block_offsets(const Axis* ay, const Axis* ax, Geometry* ge) noexcept nogil:
    """ge.koff[pr*k_max + (ci*Ty + ty)*Tx + tx]: where tap (ci, ty, tx) of pair pr reads the block
    for grid pixel (0, 0); pixel (r, qx) of a row tile reads r*pitch + qx further."""
    cdef Py_ssize_t pr, cy, cx, ci, ty, tx, ty_n, tx_n
    cdef Py_ssize_t* ko
    for pr in range(ge.npairs):
        cy = pr // ax.ncls
        cx = pr - cy * ax.ncls
        ty_n = ay.taps[cy]
        tx_n = ax.taps[cx]
        ko = ge.koff + pr * ge.k_max
        for ci in range(ge.cig):
            for ty in range(ty_n):
                for tx in range(tx_n):
                    ko[(ci * ty_n + ty) * tx_n + tx] = ((ci * ge.brows + (ty_n - 1 - ty) * ay.dd) * ge.pitch
                                                        + ax.base[cx] - tx * ax.dd - ge.c_lo)


cdef int subpixel_impl(const floating* x, const floating* w, const floating* bias, bint has_bias,
                       floating* out, Py_ssize_t n, Py_ssize_t cin, Py_ssize_t h, Py_ssize_t wd,
                       Py_ssize_t cout, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t oh_n,
                       Py_ssize_t ow_n, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
                       Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups, int num_threads,
                       int source) except -1:
    """The source the GEMMs read (SOURCE_IM2COL, _BLOCK or _PIXEL_ROWS)."""
    cdef Axis ay, ax
    cdef Geometry ge
    cdef Py_ssize_t cy, cx, pr, kdim, m, rows_max, col_rows = 0, c_rows = 1, k_max = 0, wp_len
    cdef Py_ssize_t nr = nr_of(<floating>0), q_cap = 0, lane_len = 0, k_sum = 0, k_pairs = 0, m_all = 0
    cdef Py_ssize_t nseg, seg_len, tile, tps, items, r, g, c0, nblk, rt, col_len, c_len, cob
    cdef bint grid_direct = False, direct, by_channel, pixels_fit = True
    cdef Py_ssize_t* woff = NULL
    cdef floating* wp = NULL
    cdef floating* scratch = NULL
    cdef Py_ssize_t* segs = NULL
    cdef const floating** srcs = NULL
    cdef Py_ssize_t seg_cap
    cdef int nt
    ay.q = NULL
    ax.q = NULL
    ge.koff = NULL
    ge.pitch = 0
    ge.pixel_rows = False
    ge.in_place = False
    try:
        if axis_init(&ay, h, oh_n, kh, sh, ph, dh) < 0 or axis_init(&ax, wd, ow_n, kw, sw, pw, dw) < 0:
            raise MemoryError("cannot allocate the kernel's scratch memory")
        ge.n, ge.cin, ge.h, ge.wd, ge.cout, ge.kh, ge.kw = n, cin, h, wd, cout, kh, kw
        ge.oh_n, ge.ow_n, ge.sh, ge.sw = oh_n, ow_n, sh, sw
        ge.cig, ge.cog, ge.has_bias = cin // groups, cout // groups, has_bias
        ge.qym = 0
        for cy in range(ay.ncls):
            ge.qym = max(ge.qym, ay.q[cy])
        ge.qxm = 0
        for cx in range(ax.ncls):
            ge.qxm = max(ge.qxm, ax.q[cx])
        ge.npairs = ay.ncls * ax.ncls
        woff = <Py_ssize_t*>malloc(ge.npairs * sizeof(Py_ssize_t))
        if woff == NULL:
            raise MemoryError("cannot allocate the kernel's scratch memory")
        for pr in range(ge.npairs):
            cy = pr // ax.ncls
            cx = pr - cy * ax.ncls
            kdim = ge.cig * ay.taps[cy] * ax.taps[cx]
            m = (ay.first[cy + 1] - ay.first[cy]) * (ax.first[cx + 1] - ax.first[cx]) * ge.cog
            m_all = max(m_all, m)  # pixel_gemm's items also set the rows of phases without taps
            if kdim:
                k_max = max(k_max, kdim)
                direct = pair_direct(&ay, &ax, cy, cx, &ge)
                grid_direct = grid_direct or direct
                c_rows = max(c_rows, m)
                pixels_fit = pixels_fit and pixel_lanes_full(m, nr)
                k_sum += kdim
                k_pairs += 1
                if not direct:
                    col_rows = max(col_rows, kdim)
        ge.k_max = k_max
        # the block source for pixel_gemm where every class pair's output channels fill its
        # vectors, their mean reduction pays for its stores and a block of NR rows of weights
        # fits its share of L2; else for gather_gemm where its rows fill register blocks and its
        # reductions are short; else im2col
        rt = 0
        pixels_fit = (pixels_fit and k_pairs and k_sum >= PIXEL_MIN_K * k_pairs
                      and k_max * nr * <Py_ssize_t>sizeof(floating) <= PIXEL_W_BYTES)
        if source == SOURCE_PIXEL_ROWS or (source == SOURCE_AUTO and pixels_fit):
            rt = block_rows(&ay, &ax, &ge, col_rows, c_rows, groups * n * ay.ncls, sizeof(floating), False, False)
            ge.pixel_rows = rt > 0
            q_cap = rt * ge.qxm
        if not ge.pixel_rows and (source == SOURCE_AUTO or source == SOURCE_BLOCK):
            rt = block_rows(&ay, &ax, &ge, col_rows, c_rows, groups * n * ay.ncls, sizeof(floating),
                            True, source == SOURCE_AUTO)
        ge.bh = nr if ge.pixel_rows else CCB_MR
        wp_len = 0
        for pr in range(ge.npairs):
            cy = pr // ax.ncls
            cx = pr - cy * ax.ncls
            kdim = ge.cig * ay.taps[cy] * ax.taps[cx]
            m = (ay.first[cy + 1] - ay.first[cy]) * (ax.first[cx + 1] - ax.first[cx]) * ge.cog
            # pair pr packs groups blocks of (m, kdim); pairs without taps pack nothing
            woff[pr] = wp_len
            wp_len += groups * padded(m, ge.bh) * kdim
        if rt:
            # block source: tiles of rt whole grid rows of one image
            nseg = n
            seg_len = ge.qym * ge.qxm
            tile = rt * ge.qxm
            col_len = ge.blk_len
            c_len = c_rows * ceil_div(rt * ge.pitch, nr) * nr
            if ge.pixel_rows:  # its results go straight to the output
                c_len = 0
                lane_len = m_all
            ge.koff = <Py_ssize_t*>malloc(max(ge.npairs * k_max, 1) * sizeof(Py_ssize_t))
            if ge.koff == NULL:
                raise MemoryError("cannot allocate the kernel's scratch memory")
            block_offsets(&ay, &ax, &ge)
        else:
            # scratch rows per pixel: one column block, and the GEMM results of every x class
            rows_max = col_rows + ax.ncls * c_rows
            # a direct pair reads the input plane as its column matrix, so tiles must not cross images
            nseg = n if grid_direct else 1
            seg_len = ge.qym * ge.qxm * (1 if grid_direct else n)
            tile = subpixel_tile(seg_len, rows_max, k_max, sizeof(floating), groups * nseg * ay.ncls)
            col_len = col_rows * tile
            c_len = c_rows * tile
        tps = ceil_div(seg_len, tile)
        items = groups * nseg * tps * ay.ncls
        # output channels per item: blocks of them when the tiles give too few items (batch-1
        # layers: 2x on a 512 -> 256 channel 2x2 upsampling); a block's GEMM rows are (co, member),
        # c_rows // cog the most members of a class pair (0 when no phase has taps)
        cob = row_block(ge.cog, items, ceil_div(MIN_ROWS, max(c_rows // ge.cog, 1)), ge.bh)
        items = items * ceil_div(ge.cog, cob)
        nt = team_size(num_threads, items, n * cin * h * wd * ge.cog * kh * kw)
        if wp_len:
            wp = <floating*>vector_malloc(wp_len * sizeof(floating))
        scratch = <floating*>malloc(nt * (col_len + ax.ncls * c_len + panel_len(<floating>0) + lane_len)
                                    * sizeof(floating))
        # a tile touches at most tile // qxm + 2 grid rows; then per x class its pixel count and
        # offset, per x phase its output column and end
        seg_cap = 4 * (tile // ge.qxm + 2)
        segs = <Py_ssize_t*>malloc(nt * (seg_cap + 2 * ax.ncls + 2 * sw + 2 * q_cap + lane_len) * sizeof(Py_ssize_t))
        srcs = <const floating**>malloc(nt * sw * sizeof(floating*))
        if scratch == NULL or segs == NULL or srcs == NULL or (wp_len and wp == NULL):
            raise MemoryError("cannot allocate the kernel's scratch memory")
        nblk = ceil_div(ge.cig, PACK_CI)
        by_channel = single_members(&ay, &ax) and kh * kw <= PACK_MAX_KK
        with nogil, parallel(num_threads=nt):
            for r in prange(groups * nblk, schedule="dynamic"):
                g = r // nblk
                c0 = (r - g * nblk) * PACK_CI
                if by_channel:
                    pack_by_channel(w, wp, &ay, &ax, woff, &ge, g, c0, min(c0 + PACK_CI, ge.cig))
                else:
                    pack_block(w, wp, &ay, &ax, woff, &ge, g, c0, min(c0 + PACK_CI, ge.cig))
        run_items(x, wp, bias, out, &ay, &ax, &ge, woff, scratch, col_len, c_len, segs, srcs, seg_cap, q_cap, lane_len,
                  items, nseg, seg_len, tps, tile, cob, nt)
    finally:
        free(srcs)
        free(segs)
        free(scratch)
        free(wp)
        free(woff)
        free(ge.koff)
        axis_free(&ay)
        axis_free(&ax)
    if ge.pixel_rows:
        return SOURCE_PIXEL_ROWS
    return SOURCE_BLOCK if ge.pitch else SOURCE_IM2COL


def conv_transpose2d_subpixel(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] w,
                              const floating[::1] bias, floating[:, :, :, ::1] out,
                              int sh, int sw, int ph, int pw, int dh, int dw, int groups,
                              int num_threads, str source="auto"):
    """conv_transpose2d's contract (any stride and dilation). Returns the source the classes'
    GEMMs read: "im2col", "block" or "pixel rows" (tests). `source` (tests) asks for one where
    it can run (the block sources need a tap outside the direct pairs): all give the
    micro-kernel the same values in the same order, so the results are bitwise equal."""
    cdef int asked = SOURCES.index(source)
    cdef int used = subpixel_impl(&x[0, 0, 0, 0], &w[0, 0, 0, 0], &bias[0] if bias.shape[0] else NULL,
                                  bias.shape[0] != 0, &out[0, 0, 0, 0], x.shape[0], x.shape[1], x.shape[2],
                                  x.shape[3], out.shape[1], w.shape[2], w.shape[3], out.shape[2], out.shape[3],
                                  sh, sw, ph, pw, dh, dw, groups, num_threads, asked)
    return SOURCES[used]
