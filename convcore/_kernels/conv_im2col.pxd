# The im2col gather shared by the GEMM path (convcore._kernels.conv) and the register-blocked
# path (convcore._kernels.conv_blocked).
from cython cimport floating
from libc.string cimport memcpy

from convcore._kernels._tiling cimport span_hi, span_lo


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
                    if sw == 1:
                        memcpy(dst + a, src + a, (e - a) * sizeof(floating))
                    else:
                        for ow in range(a, e):
                            dst[ow] = src[ow * sw]
                    for ow in range(e, ow1):
                        dst[ow] = 0
                    dst += ow1
                    p = ow1 - ow0 + p
                    oh = oh + 1
                    ow0 = 0
                row += ld
