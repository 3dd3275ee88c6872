"""conv2d and conv_transpose2d for small calls: an output pixel at a time, all output channels
of its group in one accumulator.

In a call of a few thousand multiply-adds the other paths spend most of their time on set-up
that pays off only on larger calls: packing weights into register blocks, a work item per image,
rows of two or three pixels against a micro-kernel 32 lanes wide (a (10, 32, 2) 1-D transposed
conv: 8.6 us in the sub-pixel kernel for 20480 multiply-adds). Here the weights are copied once
into (group, tap, C_in/groups, C_out/groups) order; for each output pixel and each tap, each input
channel adds x * w[tap, ci, :] to the pixel's accumulator in one contiguous loop over the group's
output channels, which the compiler vectorises. The tap -> input position tables are built per
axis, so the inner loops do no index arithmetic beyond an offset.

Products: conv2d multiplies every tap, padding read as 0 (as the GEMM paths: 0 * Inf is NaN);
conv_transpose2d forms exactly the products of input positions that land in the output, as
torch's col2im does. One thread and a fixed summation order (taps, then input channels), so the
result does not depend on num_threads. ``small_enough`` says which calls are small enough.
"""
from cython cimport floating
from libc.stdlib cimport free, malloc
from libc.string cimport memset

from convcore._kernels._microkernel cimport CCB_VBYTES

cdef extern from *:
    """
    /* One pixel's accumulator vector (VL output channels) over its taps: tap (ky, kx) reads
       input position (yi[ky], xi[kx]) (-1: outside the input, read as 0 where `skip_outside`
       is false, skipped where it is true) of each input channel and adds it times the
       channels' weight vector wt[((ky*kw + kx)*cig + ci)*cop ..]. */
    #define CCS_X(ci) (inside ? xp[(ci) * hw] : 0)
    #define CCS_PIXEL(T, SUF)                                                                 \\
    typedef T ccs_v_##SUF __attribute__((vector_size(CCB_VBYTES), aligned(sizeof(T)), may_alias)); \\
    static inline void ccs_pixel_##SUF(const T* init, T* acc, const T* xg, ptrdiff_t hw, ptrdiff_t wd,\\
                                       const ptrdiff_t* yi, const ptrdiff_t* xi, ptrdiff_t kh,\\
                                       ptrdiff_t kw, ptrdiff_t cig, const T* wt, ptrdiff_t cop,\\
                                       int skip_outside) {                                     \\
        typedef ccs_v_##SUF V;                                                                \\
        /* four independent sums (input channels ci mod 4, the tail in the first), so that    \\
           each add does not wait on the previous one; added up in a fixed order at the end */\\
        V a0 = *(const V*)init, a1 = {0}, a2 = {0}, a3 = {0};                                 \\
        for (ptrdiff_t ky = 0; ky < kh; ky++) {                                               \\
            for (ptrdiff_t kx = 0; kx < kw; kx++) {                                           \\
                int inside = yi[ky] >= 0 && xi[kx] >= 0;                                      \\
                if (!inside && skip_outside)                                                  \\
                    continue;                                                                 \\
                const T* wr = wt + (ky * kw + kx) * cig * cop;                                \\
                const T* xp = xg + (inside ? yi[ky] * wd + xi[kx] : 0);                       \\
                ptrdiff_t ci = 0;                                                             \\
                for (; ci + 4 <= cig; ci += 4) {                                              \\
                    a0 += CCS_X(ci) * *(const V*)(wr + ci * cop);                             \\
                    a1 += CCS_X(ci + 1) * *(const V*)(wr + (ci + 1) * cop);                   \\
                    a2 += CCS_X(ci + 2) * *(const V*)(wr + (ci + 2) * cop);                   \\
                    a3 += CCS_X(ci + 3) * *(const V*)(wr + (ci + 3) * cop);                   \\
                }                                                                             \\
                for (; ci < cig; ci++)                                                        \\
                    a0 += CCS_X(ci) * *(const V*)(wr + ci * cop);                             \\
            }                                                                                 \\
        }                                                                                     \\
        *(V*)acc = (a0 + a1) + (a2 + a3);                                                     \\
    }
    CCS_PIXEL(float, f)
    CCS_PIXEL(double, d)
    """
    void ccs_pixel_f(const float* init, float* acc, const float* xg, Py_ssize_t hw, Py_ssize_t wd, const Py_ssize_t* yi,
                     const Py_ssize_t* xi, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t cig, const float* wt,
                     Py_ssize_t cop, int skip_outside) noexcept nogil
    void ccs_pixel_d(const double* init, double* acc, const double* xg, Py_ssize_t hw, Py_ssize_t wd, const Py_ssize_t* yi,
                     const Py_ssize_t* xi, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t cig, const double* wt,
                     Py_ssize_t cop, int skip_outside) noexcept nogil

cdef Py_ssize_t _max_steps = 4096  # see small_enough
# bytes per SIMD vector of this build (64 with AVX-512, 32 with AVX, 16 portable): a call's steps
# are counted in vectors, so the same shape is small in a wider build only (tests scale by it)
VECTOR_BYTES = CCB_VBYTES
cdef enum:
    VISIT_STEPS = 8     # cost of a tap visit (bounds test, pointers, loop set-up) in steps
    SMALL_MIN_COG = 4   # fewer output channels per group: the direct loops


def set_max_steps(Py_ssize_t steps):
    """The small-call bound of small_enough (tests of the other paths on small shapes set 0);
    returns the old one."""
    global _max_steps
    old = _max_steps
    _max_steps = steps
    return old


cdef inline Py_ssize_t taps_table(Py_ssize_t* idx, Py_ssize_t o_n, Py_ssize_t k, Py_ssize_t i_n,
                                  Py_ssize_t s, Py_ssize_t p, Py_ssize_t d, bint transposed) noexcept nogil:
    """idx[o*k + t]: the input position tap t reads for output position o, -1 outside the input
    (for conv_transpose2d also where no input position lands)."""
    cdef Py_ssize_t o, t, i, u
    for o in range(o_n):
        for t in range(k):
            if transposed:
                u = o + p - t * d  # = i*s for the input position i that lands here
                i = u // s if u >= 0 and u % s == 0 else -1
            else:
                i = o * s - p + t * d
            idx[o * k + t] = i if 0 <= i < i_n else -1
    return 0


cdef int small_impl(const floating* x, const floating* w, const floating* bias, bint has_bias,
                    floating* out, Py_ssize_t n, Py_ssize_t cin, Py_ssize_t h, Py_ssize_t wd,
                    Py_ssize_t cout, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t oh_n, Py_ssize_t ow_n,
                    Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
                    Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups, bint transposed) except -1:
    # one vector of output channels at a time, summed in a register; weight rows are padded
    # with zeros to whole vectors
    cdef Py_ssize_t lanes = CCB_VBYTES // sizeof(floating)
    cdef Py_ssize_t cig = cin // groups, cog = cout // groups, kk = kh * kw, hw = h * wd
    cdef Py_ssize_t cop = (cog + lanes - 1) // lanes * lanes
    cdef Py_ssize_t g, ci, co, cb, co0, nco, t, img, oy, ox, l, q, plane = oh_n * ow_n
    cdef floating acc[16]  # one vector: 16 lanes of float32 at most
    cdef const floating* wg
    cdef const floating* src
    cdef const floating* xg
    cdef floating* dst
    # the weights, then the bias padded to whole vectors per group (each pixel's initial sums)
    cdef floating* wt = <floating*>malloc(groups * (kk * cig + 1) * cop * sizeof(floating))
    cdef floating* bp
    cdef Py_ssize_t* yidx = <Py_ssize_t*>malloc((oh_n * kh + ow_n * kw) * sizeof(Py_ssize_t))
    cdef Py_ssize_t* xidx
    if wt == NULL or yidx == NULL:
        free(wt)
        free(yidx)
        raise MemoryError("cannot allocate the kernel's scratch memory")
    with nogil:
        xidx = yidx + oh_n * kh
        taps_table(yidx, oh_n, kh, h, sh, ph, dh, transposed)
        taps_table(xidx, ow_n, kw, wd, sw, pw, dw, transposed)
        # wt[g, ky, kx, ci, co]: conv2d weights are (C_out, C_in/groups, KH, KW), transposed
        # ones (C_in, C_out/groups, KH, KW)
        bp = wt + groups * kk * cig * cop
        if cop > cog or not has_bias:
            memset(wt, 0, groups * (kk * cig + 1) * cop * sizeof(floating))
        for g in range(groups):
            for co in range(cog if has_bias else 0):
                bp[g * cop + co] = bias[g * cog + co]
        for g in range(groups):
            for t in range(kk):
                for ci in range(cig):
                    dst = wt + ((g * kk + t) * cig + ci) * cop
                    if transposed:
                        src = w + (g * cig + ci) * cog * kk + t
                        for co in range(cog):
                            dst[co] = src[co * kk]
                    else:
                        src = w + (g * cog * cig + ci) * kk + t
                        for co in range(cog):
                            dst[co] = src[co * cig * kk]
        for img in range(n):
            for g in range(groups):
                xg = x + (img * cin + g * cig) * hw
                for cb in range(cop // lanes):
                    co0 = cb * lanes
                    nco = min(lanes, cog - co0)
                    wg = wt + g * kk * cig * cop + co0
                    dst = out + (img * cout + g * cog + co0) * plane
                    for oy in range(oh_n):
                        for ox in range(ow_n):
                            if floating is float:
                                ccs_pixel_f(bp + g * cop + co0, acc, xg, hw, wd, yidx + oy * kh, xidx + ox * kw,
                                            kh, kw, cig, wg, cop, transposed)
                            else:
                                ccs_pixel_d(bp + g * cop + co0, acc, xg, hw, wd, yidx + oy * kh, xidx + ox * kw,
                                            kh, kw, cig, wg, cop, transposed)
                            q = oy * ow_n + ox
                            for l in range(nco):
                                dst[l * plane + q] = acc[l]
    free(wt)
    free(yidx)
    return 0


cpdef bint small_enough(Py_ssize_t n, Py_ssize_t groups, Py_ssize_t cig, Py_ssize_t cog,
                        Py_ssize_t taps, Py_ssize_t product_pixels, Py_ssize_t out_pixels,
                        Py_ssize_t itemsize):
    """Whether a call takes this kernel. Its time is about its accumulator steps (a vector of
    output channels times an input value: per group and vector, product_pixels x taps x cig,
    where product_pixels is the output plane for conv2d, the input plane for conv_transpose2d),
    plus its tap visits (out_pixels x taps per group and vector, each costing about VISIT_STEPS
    steps), plus its weight copy. Measured against the other paths (Zen 4, 2 threads, 36 small
    shapes), it wins up to a few thousand steps: a (10, 32, 2) 1-D transposed conv 3.0 vs 10.0
    us, a 1x1 conv over 8 channels on 16 2x2 images 3.2 vs 4.8 us. Under SMALL_MIN_COG output
    channels per group most of a vector is idle and the direct loops are faster (depthwise 3x3
    on 4 8x8 planes: 9.3 vs 3.6 us)."""
    cdef Py_ssize_t vectors = n * groups * ((cog + CCB_VBYTES // itemsize - 1) // (CCB_VBYTES // itemsize))
    return (cog >= SMALL_MIN_COG
            and <double>vectors * taps * (<double>product_pixels * cig + VISIT_STEPS * out_pixels) <= _max_steps
            and <double>groups * cig * cog * taps <= _max_steps)


def conv2d_small(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] w,
                 const floating[::1] bias, floating[:, :, :, ::1] out,
                 int sh, int sw, int ph, int pw, int dh, int dw, int groups, bint transposed):
    """conv2d's or (transposed) conv_transpose2d's contract (convcore/_kernels/__init__.py)."""
    small_impl(&x[0, 0, 0, 0], &w[0, 0, 0, 0], &bias[0] if bias.shape[0] else NULL,
               bias.shape[0] != 0, &out[0, 0, 0, 0], x.shape[0], x.shape[1], x.shape[2],
               x.shape[3], out.shape[1], w.shape[2], w.shape[3], out.shape[2], out.shape[3],
               sh, sw, ph, pw, dh, dw, groups, transposed)
