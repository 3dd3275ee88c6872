# The input gathers shared by the conv2d paths: im2col (convcore._kernels.conv, conv_blocked) and
# the phase-split block (conv_blocked, conv_direct).
from cython cimport floating
from libc.string cimport memcpy

from convcore._kernels._tiling cimport clamp, span_hi, span_lo

cdef extern from *:
    """
    #include <stddef.h>
    /* dst[i] = src[2i] for i < n: the even elements of two loaded vectors picked by one
       shuffle. Element by element, this stride-2 gather was 60% of a depthwise 3x3 stride-2
       conv at batch 1. The vector loop stops where its second load would pass src[2(n-1)]. */
    #if defined(__clang__) || __GNUC__ >= 12
    #define CCG_VECTOR(VL, EVEN)                                                              \
        for (; i + VL < n; i += VL) {                                                         \
            V a = *(const V*)(src + 2 * i), c = *(const V*)(src + 2 * i + VL);                \
            *(V*)(dst + i) = __builtin_shufflevector(a, c, CCG_LIST EVEN);                    \
        }
    #else
    #define CCG_VECTOR(VL, EVEN)
    #endif
    #define CCG_LIST(...) __VA_ARGS__
    #define CCG_DEF(T, SUF, VL, EVEN)                                                         \
    static inline void ccg_stride2_##SUF(T* dst, const T* src, ptrdiff_t n) {                \
        typedef T V __attribute__((vector_size(VL * sizeof(T)), aligned(sizeof(T)), may_alias)); \
        ptrdiff_t i = 0;                                                                      \
        CCG_VECTOR(VL, EVEN)                                                                  \
        for (; i < n; i++)                                                                    \
            dst[i] = src[2 * i];                                                              \
    }
    CCG_DEF(float, f, 16, (0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30))
    CCG_DEF(double, d, 8, (0, 2, 4, 6, 8, 10, 12, 14))
    """
    void ccg_stride2_f(float* dst, const float* src, Py_ssize_t n) noexcept nogil
    void ccg_stride2_d(double* dst, const double* src, Py_ssize_t n) noexcept nogil


cdef inline void strided_copy(floating* dst, const floating* src, Py_ssize_t n, Py_ssize_t s) noexcept nogil:
    """dst[i] = src[i*s] for i < n."""
    cdef Py_ssize_t i
    if s == 1:
        memcpy(dst, src, n * sizeof(floating))
    elif s == 2:
        if floating is float:
            ccg_stride2_f(dst, src, n)
        else:
            ccg_stride2_d(dst, src, n)
    else:
        for i in range(n):
            dst[i] = src[i * s]


cdef inline void im2col(const floating* xg, Py_ssize_t cig, Py_ssize_t h, Py_ssize_t wd,
                        Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t ow_n,
                        Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
                        Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t p0, Py_ssize_t p1,
                        floating* col, Py_ssize_t ld) noexcept nogil:
    """col[(ci, i, j) * ld + p - p0] = x[ci, oh*sh - ph + i*dh, ow*sw - pw + j*dw] for p = oh*OW + ow."""
    cdef Py_ssize_t ci, i, j, p, oh, ow0, ow1, iy, off, lo, hi, ow, a, e
    cdef const floating* src
    cdef floating* dst
    cdef floating* row = col
    cdef Py_ssize_t oh0 = p0 // ow_n
    for ci in range(cig):
        for i in range(kh):
            for j in range(kw):
                off = j * dw - pw
                # output columns whose tap j reads inside the row: 0 <= ow*sw + off < wd
                lo = span_lo(off, sw)
                hi = span_hi(off, sw, wd)
                dst = row
                p = p0
                oh = oh0
                ow0 = p0 - oh0 * ow_n
                # one output row (or the tile's part of it) at a time
                while p < p1:
                    ow1 = ow_n if ow_n - ow0 < p1 - p else ow0 + (p1 - p)
                    iy = oh * sh - ph + i * dh
                    if iy < 0 or iy >= h:
                        a = e = ow1
                    else:
                        a = lo if lo > ow0 else ow0
                        e = hi if hi < ow1 else ow1
                        if e < a:
                            a = e = ow1
                    dst -= ow0
                    for ow in range(ow0, a):
                        dst[ow] = 0
                    src = xg + (ci * h + iy) * wd + off
                    if e > a:
                        strided_copy(dst + a, src + a * sw, e - a, sw)
                    for ow in range(e, ow1):
                        dst[ow] = 0
                    dst += ow1
                    p = ow1 - ow0 + p
                    oh = oh + 1
                    ow0 = 0
                row += ld


cdef inline void load_phases(floating* blk, const floating* xc, Py_ssize_t h, Py_ssize_t wd,
                             Py_ssize_t y0, Py_ssize_t x0, Py_ssize_t sh, Py_ssize_t sw,
                             Py_ssize_t ry_n, Py_ssize_t rows, Py_ssize_t wp) noexcept nogil:
    """blk[((rho*sw + sig)*ry_n + ry)*wp + cx] = x[y0 + ry*sh + rho, x0 + cx*sw + sig] (0 outside)
    for ry < rows <= ry_n: phase (rho, sig) of the input is a plane of ry_n rows of pitch wp."""
    cdef Py_ssize_t rho, sig, ry, cx, iy, a, e
    cdef floating* dst
    cdef const floating* src
    for rho in range(sh):
        for sig in range(sw):
            # columns cx with 0 <= x0 + cx*sw + sig < wd
            a = clamp(span_lo(x0 + sig, sw), 0, wp)
            e = clamp(span_hi(x0 + sig, sw, wd), a, wp)
            for ry in range(rows):
                dst = blk + ((rho * sw + sig) * ry_n + ry) * wp
                iy = y0 + ry * sh + rho
                if iy < 0 or iy >= h:
                    for cx in range(wp):
                        dst[cx] = 0
                    continue
                src = xc + iy * wd + x0 + sig
                for cx in range(a):
                    dst[cx] = 0
                if e > a:
                    strided_copy(dst + a, src + a * sw, e - a, sw)
                for cx in range(e, wp):
                    dst[cx] = 0
