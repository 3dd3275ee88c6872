# Per-axis output phases of a transposed conv, shared by its sub-pixel and direct kernels.
#
# Along one axis (input size I, output size O, kernel K, stride s, padding p, dilation d) the
# output o = a + q*s of phase a (0 <= a < s) receives tap k from input i when i*s = o + p - k*d,
# i.e. k*d = a + p (mod s). With c = gcd(s, d) the taps of phase a are none when c does not
# divide a + p, else k = k0 + t*s/c (k0 the smallest solution), reading i = q + base - t*d/c:
#     out[a + q*s] = sum_t x[q + base - t*dd] * w[k0 + t*ks],   ks = s/c, dd = d/c,
#     base = (a + p - k0*d) / s,  taps = ceil((K - k0) / ks),  x read as 0 outside.
# So every phase is a dense correlation of the input: stride 1 gives one phase, a "full"
# correlation with the flipped kernel (k0 = 0, base = p, dd = d); dilation 1 gives the sub-pixel
# decomposition (k0 = (a + p) mod s, ks = s, dd = 1). Phases with equal (count of q, base, taps)
# read the same input columns, so they form a class whose members share one im2col block and
# stack their weights in one GEMM.
from libc.stdlib cimport malloc, free


cdef struct Axis:
    Py_ssize_t stride, ks, dd, ncls
    Py_ssize_t* q       # per class: output positions of each member phase
    Py_ssize_t* base    # per class
    Py_ssize_t* taps    # per class
    Py_ssize_t* first   # ncls + 1 entries: members of class c are first[c] .. first[c+1]-1
    Py_ssize_t* phase   # per member: the phase a
    Py_ssize_t* k0      # per member: its first kernel tap


cdef inline Py_ssize_t tap_step(Py_ssize_t s, Py_ssize_t d) noexcept nogil:
    """ks = s / gcd(s, d): the step between the kernel taps of one phase."""
    cdef Py_ssize_t a = s, b = d
    while b:
        a, b = b, a % b
    return s // a


cdef inline Py_ssize_t max_phase_taps(Py_ssize_t k, Py_ssize_t s, Py_ssize_t d) noexcept nogil:
    """Most taps any phase of this axis has: ceil(K / ks)."""
    cdef Py_ssize_t ks = tap_step(s, d)
    return (k + ks - 1) // ks


cdef inline Py_ssize_t phase_k0(Py_ssize_t r, Py_ssize_t s, Py_ssize_t d, Py_ssize_t ks) noexcept nogil:
    """Smallest tap k >= 0 with k*d = r (mod s), or -1 when there is none (k repeats mod ks)."""
    cdef Py_ssize_t k
    for k in range(ks):
        if (k * d - r) % s == 0:
            return k
    return -1


cdef inline int axis_init(Axis* ax, Py_ssize_t i_n, Py_ssize_t o_n, Py_ssize_t k, Py_ssize_t s,
                          Py_ssize_t p, Py_ssize_t d) noexcept nogil:
    """Fill ax for one axis; -1 when out of memory."""
    cdef Py_ssize_t a, c, q, base, taps, m, k0
    cdef Py_ssize_t* block = <Py_ssize_t*>malloc((8 * s + 1) * sizeof(Py_ssize_t))
    if block == NULL:
        return -1
    ax.q = block
    ax.base = block + s
    ax.taps = block + 2 * s
    ax.first = block + 3 * s
    ax.phase = block + 4 * s + 1
    ax.k0 = block + 5 * s + 1
    cdef Py_ssize_t* cls_of = block + 6 * s + 1  # scratch: class of each phase (-1: no outputs)
    cdef Py_ssize_t* count = block + 7 * s + 1   # scratch: members per class
    ax.stride = s
    ax.ks = tap_step(s, d)
    ax.dd = d // (s // ax.ks)
    ax.ncls = 0
    for a in range(s):
        cls_of[a] = -1
        q = (o_n - a + s - 1) // s if o_n > a else 0
        if q == 0:
            continue
        k0 = phase_k0(a + p, s, d, ax.ks)
        # (a + p - k0*d) is a multiple of s, so the division is exact for either sign
        taps = (k - k0 + ax.ks - 1) // ax.ks if 0 <= k0 < k else 0
        base = (a + p - k0 * d) // s if taps else 0
        for c in range(ax.ncls):
            if ax.q[c] == q and ax.base[c] == base and ax.taps[c] == taps:
                cls_of[a] = c
                count[c] += 1
                break
        if cls_of[a] < 0:
            c = ax.ncls
            ax.q[c] = q
            ax.base[c] = base
            ax.taps[c] = taps
            count[c] = 1
            cls_of[a] = c
            ax.ncls += 1
    ax.first[0] = 0
    for c in range(ax.ncls):
        ax.first[c + 1] = ax.first[c] + count[c]
        count[c] = ax.first[c]  # now the next free member slot of class c
    for a in range(s):
        c = cls_of[a]
        if c >= 0:
            m = count[c]
            count[c] += 1
            ax.phase[m] = a
            ax.k0[m] = phase_k0(a + p, s, d, ax.ks)
    return 0


cdef inline void axis_free(Axis* ax) noexcept nogil:
    free(ax.q)
    ax.q = NULL
