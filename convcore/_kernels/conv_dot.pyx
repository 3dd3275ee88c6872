"""conv2d for float32 calls with few output pixels and very long reductions (batch-1 layers deep
in a network, 3x3 over 512 channels and more).

With N output pixels per group and K = Cin/groups*KH*KW past the blocked path's bound, the GEMM
path cuts K into chunks and re-reads its result per chunk, and at N = 49 (3x3 over 512
channels on a 7x7 plane, batch 1) its 32-pixel register blocks run a quarter idle. Here each
output is a dot product along K: the columns are gathered once per call, transposed ((group,
pixel, K) with K contiguous), and a register block of DR weight rows x DP pixels keeps DR*DP
vector accumulators whose lanes run along K, loading DR weight vectors straight from ``w`` and
DP column vectors per step. The vector sums
are kept in a per-thread scratch across reduction chunks of DK_BYTES (so that a chunk of the
columns stays in L2 while every row block of the item reads it, and a block's weight chunk in L1
while every pixel block reads it) and added up across lanes once, at the end, in a fixed order.

Every output is bias + (lane sums over all of K, lane l holding k = l mod VL) reduced pairwise,
whatever the chunk, item or thread: results are bitwise identical for any num_threads. Padding
taps are read as stored zeros and multiplied (0 * Inf is NaN, as in the GEMM paths). Extra memory:
the transposed columns (bounded by ``dot_fits``), the accumulators of one item per thread.
"""
from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.stdlib cimport free, malloc

from convcore._kernels._openmp cimport omp_get_thread_num
from convcore._kernels._microkernel cimport CCB_VBYTES
from convcore._kernels._tiling cimport ceil_div, team_size

cdef extern from *:
    """
    #include <stddef.h>
    #include <string.h>
    #if defined(__AVX512F__)
    #define CCD_DR 4   /* 24 accumulators + 4 weight vectors + a column vector: 32 zmm */
    #define CCD_DP 6
    #else
    #define CCD_DR 2   /* 8 accumulators + 6 sources: 16 ymm/xmm */
    #define CCD_DP 4
    #endif
    /* acc[r*DP + p] += lane-wise sum over the kv vectors k of row r's w + r*ldw + k*VL times
       pixel p's c + p*ldc + k*VL; rows past nrow and pixels past npix repeat the last one */
    #define CCD_BLOCK(T, SUF)                                                                 \\
    typedef T ccd_v_##SUF __attribute__((vector_size(CCB_VBYTES), aligned(sizeof(T)), may_alias)); \\
    static inline void ccd_block_##SUF(ptrdiff_t kv, const T* wb, ptrdiff_t ldw, int nrow,    \\
                                       const T* cb, ptrdiff_t ldc, int npix, T* acc) {        \\
        typedef ccd_v_##SUF V;                                                                \\
        enum { VL = CCB_VBYTES / sizeof(T) };                                                 \\
        const T* w[CCD_DR];                                                                   \\
        const T* c[CCD_DP];                                                                   \\
        for (int r = 0; r < CCD_DR; r++)                                                      \\
            w[r] = wb + (r < nrow ? r : nrow - 1) * ldw;                                      \\
        for (int p = 0; p < CCD_DP; p++)                                                      \\
            c[p] = cb + (p < npix ? p : npix - 1) * ldc;                                      \\
        V a[CCD_DR * CCD_DP];                                                                 \\
        _Pragma("GCC unroll 32") for (int i = 0; i < CCD_DR * CCD_DP; i++)                    \\
            a[i] = *(const V*)(acc + i * VL);                                                 \\
        for (ptrdiff_t k = 0; k < kv * VL; k += VL) {                                         \\
            V wv[CCD_DR];                                                                     \\
            _Pragma("GCC unroll 8") for (int r = 0; r < CCD_DR; r++)                          \\
                wv[r] = *(const V*)(w[r] + k);                                                \\
            _Pragma("GCC unroll 8") for (int p = 0; p < CCD_DP; p++) {                        \\
                V cv = *(const V*)(c[p] + k);                                                 \\
                /* in a register: folded into each FMA it would be loaded DR times */         \\
                __asm__("" : "+v"(cv));                                                       \\
                _Pragma("GCC unroll 8") for (int r = 0; r < CCD_DR; r++)                      \\
                    a[r * CCD_DP + p] += wv[r] * cv;                                          \\
            }                                                                                 \\
        }                                                                                     \\
        _Pragma("GCC unroll 32") for (int i = 0; i < CCD_DR * CCD_DP; i++)                    \\
            *(V*)(acc + i * VL) = a[i];                                                       \\
    }                                                                                         \\
    /* the VL lanes at s added pairwise: (s0 + s_half) ... down to one value */               \\
    static inline T ccd_hsum_##SUF(const T* s) {                                              \\
        T t[CCB_VBYTES / sizeof(T)];                                                          \\
        memcpy(t, s, sizeof(t));                                                              \\
        _Pragma("GCC unroll 8") for (int h = CCB_VBYTES / sizeof(T) / 2; h > 0; h /= 2)       \\
            _Pragma("GCC unroll 16") for (int l = 0; l < h; l++)                              \\
                t[l] += t[l + h];                                                             \\
        return t[0];                                                                          \\
    }
    CCD_BLOCK(float, f)
    CCD_BLOCK(double, d)
    """
    const int CCD_DR
    const int CCD_DP
    void ccd_block_f(Py_ssize_t kv, const float* w, Py_ssize_t ldw, int nrow, const float* c, Py_ssize_t ldc,
                     int npix, float* acc) noexcept nogil
    void ccd_block_d(Py_ssize_t kv, const double* w, Py_ssize_t ldw, int nrow, const double* c, Py_ssize_t ldc,
                     int npix, double* acc) noexcept nogil
    float ccd_hsum_f(const float* s) noexcept nogil
    double ccd_hsum_d(const double* s) noexcept nogil

cdef enum:
    # measured (Zen 4, 2 threads, batch 1), against the GEMM paths that read the weights in
    # place: float32 3x3 over 512 channels on 7x7 1.45 vs 1.67 ms, over 1024 channels on 10x10
    # 2.85 vs 3.32, on 4x4 0.45 vs 0.49; from K = 576 to 2304 (the blocked path's range) they
    # win (1.6x), as they do in float64 (0.9-1.0x here) and at 196 pixels. A 1x1 stride-1 conv
    # (no gather: the input is the column matrix) stays on "gemm". conv2d asks dot_fits only for
    # reductions past its BLOCKED_MAX_K.
    DOT_MAX_PIXELS = 128
    DOT_MAX_COLS = 4194304   # bytes of transposed columns for the whole call
    DK_BYTES = 262144        # one reduction chunk of every pixel's columns: a quarter of L2
    ITEM_ROWS = 16           # output channels per work item (16-64 measured alike)


cdef Py_ssize_t _max_pixels = DOT_MAX_PIXELS


def set_max_pixels(Py_ssize_t pixels):
    """The bound of dot_fits on pixels per group (tests and benchmarks of the other paths set 0);
    returns the old one."""
    global _max_pixels
    old = _max_pixels
    _max_pixels = pixels
    return old


cdef inline Py_ssize_t vl_of(floating dummy) noexcept nogil:
    return CCB_VBYTES // sizeof(floating)


cpdef bint dot_fits(Py_ssize_t n, Py_ssize_t groups, Py_ssize_t cig, Py_ssize_t cog, Py_ssize_t kk,
                    Py_ssize_t out_pixels, Py_ssize_t itemsize) noexcept nogil:
    """Whether conv2d takes this path for a reduction past BLOCKED_MAX_K: float32, few pixels per
    group, columns bounded."""
    cdef Py_ssize_t k = cig * kk, vl = CCB_VBYTES // itemsize
    return (itemsize == 4 and n * out_pixels <= _max_pixels and cog >= CCD_DR
            and groups * n * out_pixels * ceil_div(k, vl) * vl * itemsize <= DOT_MAX_COLS)


cdef void gather_columns(const floating* x, floating* colt, Py_ssize_t g, Py_ssize_t j, Py_ssize_t cin,
                         Py_ssize_t h, Py_ssize_t wd, Py_ssize_t cig, Py_ssize_t kh, Py_ssize_t kw,
                         Py_ssize_t ohw, Py_ssize_t ow_n, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph,
                         Py_ssize_t pw, Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t kp,
                         Py_ssize_t* toff) noexcept nogil:
    """colt[k] = x[img, g*cig + ci, oy*sh - ph + ky*dh, ox*sw - pw + kx*dw] (0 outside) for pixel
    j = img*ohw + oy*OW + ox and k = (ci*KH + ky)*KW + kx; zeros up to kp. toff: KH*KW scratch
    for the taps' offsets in a channel plane, the same for every input channel."""
    cdef Py_ssize_t img = j // ohw, q = j - img * ohw, oy = q // ow_n, ox = q - oy * ow_n
    cdef Py_ssize_t y0 = oy * sh - ph, x0 = ox * sw - pw, kk = kh * kw, hw = h * wd
    cdef Py_ssize_t ci, ky, kx, iy, ix, t
    cdef bint inside = True
    cdef const floating* xc = x + (img * cin + g * cig) * hw
    for ky in range(kh):
        iy = y0 + ky * dh
        for kx in range(kw):
            ix = x0 + kx * dw
            if 0 <= iy < h and 0 <= ix < wd:
                toff[ky * kw + kx] = iy * wd + ix
            else:
                toff[ky * kw + kx] = -1
                inside = False
    if inside:  # no padding taps: a branch-free gather
        for ci in range(cig):
            for t in range(kk):
                colt[ci * kk + t] = xc[ci * hw + toff[t]]
    else:
        for ci in range(cig):
            for t in range(kk):
                colt[ci * kk + t] = xc[ci * hw + toff[t]] if toff[t] >= 0 else 0
    for t in range(cig * kk, kp):
        colt[t] = 0


cdef int conv2d_dot_impl(const floating* x, const floating* w, const floating* bias, bint has_bias,
                         floating* out, Py_ssize_t n, Py_ssize_t cin, Py_ssize_t h, Py_ssize_t wd,
                         Py_ssize_t cout, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t oh_n, Py_ssize_t ow_n,
                         Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t dh,
                         Py_ssize_t dw, Py_ssize_t groups, int num_threads) except -1:
    cdef Py_ssize_t cig = cin // groups, cog = cout // groups, ohw = oh_n * ow_n, npx = n * ohw
    cdef Py_ssize_t k = cig * kh * kw, vl = vl_of(<floating>0)
    cdef Py_ssize_t kmain = k // vl * vl, kp = ceil_div(k, vl) * vl
    # reduction chunk: every pixel's columns of a chunk in DK_BYTES, whole vectors
    cdef Py_ssize_t kc = max(DK_BYTES // (npx * sizeof(floating)) // vl, 1) * vl
    cdef Py_ssize_t rows_per_item = ceil_div(ITEM_ROWS, CCD_DR) * CCD_DR
    cdef Py_ssize_t nrb = ceil_div(cog, rows_per_item), items = groups * nrb
    cdef Py_ssize_t npb = ceil_div(npx, CCD_DP)
    # per thread: vector sums of the item's blocks, then the zero-padded weight tails of its rows
    cdef Py_ssize_t acc_len = rows_per_item * npb * CCD_DP * vl, tail_len = rows_per_item * vl
    cdef int nt = team_size(num_threads, items, npx * cout * k)
    cdef floating* colt = <floating*>malloc(groups * npx * kp * sizeof(floating))
    cdef floating* scratch = <floating*>malloc(nt * (acc_len + tail_len) * sizeof(floating))
    cdef Py_ssize_t* toff = <Py_ssize_t*>malloc(nt * kh * kw * sizeof(Py_ssize_t))
    if colt == NULL or scratch == NULL or toff == NULL:
        free(colt)
        free(scratch)
        free(toff)
        raise MemoryError("cannot allocate the kernel's scratch memory")
    cdef Py_ssize_t j, q, bi, item, g, r0, r1, rb, pb, k0, kv, r, i, co, img, ldw
    cdef int tid, nrow, npix
    cdef floating b
    cdef floating* acc
    cdef floating* wtail
    cdef floating* a
    cdef const floating* wb
    cdef const floating* cb
    tid = 0  # thread-private inside the region; initialised so the compiler sees a value
    with nogil, parallel(num_threads=nt):
        tid = omp_get_thread_num()
        for j in prange(groups * npx, schedule="static"):
            gather_columns(x, colt + j * kp, j // npx, j % npx, cin, h, wd, cig, kh, kw, ohw, ow_n,
                           sh, sw, ph, pw, dh, dw, kp, toff + tid * kh * kw)
    free(toff)
    with nogil, parallel(num_threads=nt):
        tid = omp_get_thread_num()
        acc = scratch + tid * (acc_len + tail_len)
        wtail = acc + acc_len
        for item in prange(items, schedule="dynamic"):
            g = item // nrb
            r0 = (item - g * nrb) * rows_per_item  # first output channel of the group
            r1 = min(r0 + rows_per_item, cog)
            for i in range(acc_len):
                acc[i] = 0
            # the weights past the last whole vector of each row, zero-padded to one vector
            for r in range(r1 - r0):
                for i in range(vl):
                    wtail[r * vl + i] = w[(g * cog + r0 + r) * k + kmain + i] if kmain + i < k else 0
            # chunks of K (the tail vector last), then pixel blocks, then row blocks: a pixel
            # block's chunk of columns stays in L1 while the item's rows stream past it. Rows and
            # pixels past the end repeat the last one, into sums that are never read
            k0 = 0
            while k0 < kp:
                kv = min(kc, kmain - k0) // vl if k0 < kmain else 1
                for pb in range(npb):
                    npix = <int>min(CCD_DP, npx - pb * CCD_DP)
                    cb = colt + (g * npx + pb * CCD_DP) * kp + k0
                    for bi in range(ceil_div(r1 - r0, CCD_DR)):
                        rb = bi * CCD_DR
                        nrow = <int>min(CCD_DR, r1 - r0 - rb)
                        if k0 < kmain:
                            wb = w + (g * cog + r0 + rb) * k + k0
                            ldw = k
                        else:
                            wb = wtail + rb * vl
                            ldw = vl
                        a = acc + (bi * npb + pb) * CCD_DR * CCD_DP * vl
                        if floating is float:
                            ccd_block_f(kv, wb, ldw, nrow, cb, kp, npix, a)
                        else:
                            ccd_block_d(kv, wb, ldw, nrow, cb, kp, npix, a)
                k0 = k0 + kv * vl
            # each output: bias + its vector sum across lanes (block (bi, pb), row r, pixel p)
            for bi in range(ceil_div(r1 - r0, CCD_DR)):
                for r in range(min(CCD_DR, r1 - r0 - bi * CCD_DR)):
                    co = g * cog + r0 + bi * CCD_DR + r
                    b = bias[co] if has_bias else 0
                    for q in range(npx):
                        pb = q // CCD_DP
                        a = acc + ((bi * npb + pb) * CCD_DR * CCD_DP + r * CCD_DP + q - pb * CCD_DP) * vl
                        img = q // ohw
                        if floating is float:
                            out[(img * cout + co) * ohw + q - img * ohw] = b + ccd_hsum_f(a)
                        else:
                            out[(img * cout + co) * ohw + q - img * ohw] = b + ccd_hsum_d(a)
    free(colt)
    free(scratch)
    return 0


def conv2d_dot(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] w,
               const floating[::1] bias, floating[:, :, :, ::1] out,
               int sh, int sw, int ph, int pw, int dh, int dw, int groups, int num_threads):
    """Same arguments and contract as convcore._kernels.conv.conv2d."""
    conv2d_dot_impl(&x[0, 0, 0, 0], &w[0, 0, 0, 0], &bias[0] if bias.shape[0] else NULL,
                    bias.shape[0] != 0, &out[0, 0, 0, 0], x.shape[0], x.shape[1], x.shape[2],
                    x.shape[3], w.shape[0], w.shape[2], w.shape[3], out.shape[2], out.shape[3],
                    sh, sw, ph, pw, dh, dw, groups, num_threads)
