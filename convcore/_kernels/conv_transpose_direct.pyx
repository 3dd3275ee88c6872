"""conv_transpose2d by direct loops, for few channels per group (depthwise and the like).

Contract: convcore/_kernels/__init__.py; the phase algebra: _transpose_phases.pxd. With a
handful of channels per group a GEMM has nothing to chew on, so the output rows of each y phase
are accumulated, a tile of rows at a time, per x phase in a contiguous buffer: bias, then one
multiply-add sweep per (input channel, tap) over the tile's rows of consecutive input pixels
(which the compiler vectorises); then the x phases are stored into the output rows (stride 2:
interleaved, front to back). Each output element is written once.
A work item is one output plane (image, channel): no two threads share an element.
"""
from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.stdlib cimport malloc, free

from convcore._kernels._openmp cimport omp_get_thread_num
from convcore._kernels._tiling cimport team_size
from convcore._kernels._transpose_phases cimport Axis, axis_init, axis_free


cdef enum:
    ACC_BYTES = 65536  # accumulator rows per thread: every x phase of a tile of phase rows (L2)


cdef void plane(const floating* x, const floating* w, floating b, floating* dst,
                const Axis* ay, const Axis* ax, Py_ssize_t cig, Py_ssize_t cog, Py_ssize_t co,
                Py_ssize_t h, Py_ssize_t wd, Py_ssize_t kh, Py_ssize_t kw,
                Py_ssize_t ow_n, Py_ssize_t qxm, Py_ssize_t rt, floating* acc) noexcept nogil:
    """dst: plane (image, g*cog + co); x: the image's group of cig input planes; w: the group's
    first input channel; acc: stride_w blocks of rt rows of qxm, one per x phase. Rows of a y
    phase go rt at a time, so that each tap's sweep runs over all of them with one set-up."""
    cdef Py_ssize_t cy, cx, my, mx, qy, qx, q0, q1, r_lo, r_hi, ci, ty, tx, dy, off, lo, hi, qx_n, k
    cdef Py_ssize_t sw = ax.stride
    cdef floating wv
    cdef floating* drow
    cdef floating* a
    cdef floating* a1
    cdef floating* blk
    cdef const floating* xrow
    cdef const floating* wc
    for cy in range(ay.ncls):
        for my in range(ay.first[cy], ay.first[cy + 1]):
            q0 = 0
            while q0 < ay.q[cy]:
                q1 = min(q0 + rt, ay.q[cy])
                # every x phase of these output rows into its own accumulator block ...
                for cx in range(ax.ncls):
                    qx_n = ax.q[cx]
                    for mx in range(ax.first[cx], ax.first[cx + 1]):
                        blk = acc + mx * rt * qxm - q0 * qxm  # row qy at blk + qy*qxm
                        for qy in range(q0, q1):
                            a = blk + qy * qxm
                            for qx in range(qx_n):
                                a[qx] = b
                        for ci in range(cig):
                            wc = w + (ci * cog + co) * kh * kw
                            for ty in range(ay.taps[cy]):
                                dy = ay.base[cy] - ty * ay.dd  # input row qy + dy
                                r_lo = max(q0, -dy)
                                r_hi = min(q1, h - dy)
                                for tx in range(ax.taps[cx]):
                                    wv = wc[(ay.k0[my] + ty * ay.ks) * kw + ax.k0[mx] + tx * ax.ks]
                                    off = ax.base[cx] - tx * ax.dd
                                    lo = -off if off < 0 else 0
                                    hi = wd - off if wd - off < qx_n else qx_n
                                    for qy in range(r_lo, r_hi):
                                        a = blk + qy * qxm
                                        xrow = x + (ci * h + qy + dy) * wd + off
                                        for qx in range(lo, hi):
                                            a[qx] += wv * xrow[qx]
                # ... then stored into the output rows, the two phases of stride 2 interleaved
                for qy in range(q0, q1):
                    drow = dst + (ay.phase[my] + qy * ay.stride) * ow_n
                    blk = acc + (qy - q0) * qxm
                    if sw == 2 and ax.first[ax.ncls] == 2:
                        a = blk if ax.phase[0] == 0 else blk + rt * qxm
                        a1 = blk + rt * qxm if ax.phase[0] == 0 else blk
                        for qx in range(ow_n // 2):
                            drow[2 * qx] = a[qx]
                            drow[2 * qx + 1] = a1[qx]
                        if ow_n % 2:
                            drow[ow_n - 1] = a[ow_n // 2]
                    else:
                        for k in range(ax.first[ax.ncls]):
                            a = blk + k * rt * qxm
                            for qx in range((ow_n - ax.phase[k] + sw - 1) // sw):
                                drow[qx * sw + ax.phase[k]] = a[qx]
                q0 = q1


cdef int direct_impl(const floating* x, const floating* w, const floating* bias, bint has_bias,
                     floating* out, Py_ssize_t n, Py_ssize_t cin, Py_ssize_t h, Py_ssize_t wd,
                     Py_ssize_t cout, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t oh_n,
                     Py_ssize_t ow_n, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
                     Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups, int num_threads) except -1:
    cdef Axis ay, ax
    cdef Py_ssize_t cig = cin // groups, cog = cout // groups, qxm = 1, qym = 1, rt, cx, cy, item, img, co, g
    cdef Py_ssize_t items = n * cout
    cdef floating* accs = NULL
    cdef int nt, tid
    ay.q = NULL
    ax.q = NULL
    try:
        if axis_init(&ay, h, oh_n, kh, sh, ph, dh) < 0 or axis_init(&ax, wd, ow_n, kw, sw, pw, dw) < 0:
            raise MemoryError("cannot allocate the kernel's scratch memory")
        for cx in range(ax.ncls):
            qxm = max(qxm, ax.q[cx])
        for cy in range(ay.ncls):
            qym = max(qym, ay.q[cy])
        rt = min(max(ACC_BYTES // (sw * qxm * <Py_ssize_t>sizeof(floating)), 1), qym)
        # multiply-adds, plus one per output element for the bias and the store
        nt = team_size(num_threads, items, n * cin * h * wd * cog * kh * kw + n * cout * oh_n * ow_n)
        accs = <floating*>malloc(nt * sw * rt * qxm * sizeof(floating))
        if accs == NULL:
            raise MemoryError("cannot allocate the kernel's scratch memory")
        tid = 0  # thread-private inside the region; initialised so the compiler sees a value
        with nogil, parallel(num_threads=nt):
            tid = omp_get_thread_num()
            for item in prange(items, schedule="dynamic"):
                img = item // cout
                co = item - img * cout
                g = co // cog
                plane(x + (img * cin + g * cig) * h * wd, w + g * cig * cog * kh * kw,
                      bias[co] if has_bias else 0, out + item * oh_n * ow_n, &ay, &ax,
                      cig, cog, co - g * cog, h, wd, kh, kw, ow_n, qxm, rt, accs + tid * sw * rt * qxm)
    finally:
        free(accs)
        axis_free(&ay)
        axis_free(&ax)
    return 0


def conv_transpose2d_direct(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] w,
                            const floating[::1] bias, floating[:, :, :, ::1] out,
                            int sh, int sw, int ph, int pw, int dh, int dw, int groups,
                            int num_threads):
    """conv_transpose2d's contract (any stride and dilation)."""
    direct_impl(&x[0, 0, 0, 0], &w[0, 0, 0, 0], &bias[0] if bias.shape[0] else NULL,
                bias.shape[0] != 0, &out[0, 0, 0, 0], x.shape[0], x.shape[1], x.shape[2],
                x.shape[3], out.shape[1], w.shape[2], w.shape[3], out.shape[2], out.shape[3],
                sh, sw, ph, pw, dh, dw, groups, num_threads)
