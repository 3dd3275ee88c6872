"""Launch plans for the GPU kernels: which kernels, in which order, with which grid and arguments.

Pure Python on shapes (no cupy): the cupy launcher in ``__init__.py`` executes a plan on the device,
and the host-emulation test executes the very same plan with the kernels compiled by the host C++
compiler, so the launch arithmetic below is tested without a GPU.

A plan is a tuple of steps over named buffers: "x", "w", "bias", "out" (the caller's arrays, all
C-contiguous) and "col" (scratch of ``Plan.scratch`` elements). A ``Ref`` is a buffer plus an
element offset. Steps are kernel launches and GEMMs already in cuBLAS's terms (``Gemm``), so the
arithmetic of the GEMM arguments is tested without a GPU as well.
"""
from typing import NamedTuple

BLOCK = 256
# cuBLAS takes matrix sizes and leading dimensions as C ints.
INT_MAX = 2**31 - 1
# Depthwise-like layers (one input channel per group) with at most this many outputs per group
# use the direct kernels: a batched GEMM with one row per matrix wastes cuBLAS.
DIRECT_MAX_COG = 8


class Ref(NamedTuple):
    buf: str
    offset: int = 0


class Kernel(NamedTuple):
    name: str
    grid: int
    block: int
    args: tuple  # Ref (a device pointer) or Python int (passed as long long)


class Gemm(NamedTuple):
    """One strided-batched GEMM in BLAS's column-major terms (cuBLAS ``<t>gemmStridedBatched``).

    For i < batch: C_i = op(A_i) @ op(B_i), C_i m x n, op(A_i) m x k, op(B_i) k x n; X_i starts
    ``stride_x * i`` elements past the ref x and is column-major with leading dimension ``ldx``;
    op transposes where ``trans_x``. Integers other than the strides fit a C int.
    """
    trans_a: bool
    trans_b: bool
    m: int
    n: int
    k: int
    a: Ref
    lda: int
    stride_a: int
    b: Ref
    ldb: int
    stride_b: int
    c: Ref
    ldc: int
    stride_c: int
    batch: int


class Plan(NamedTuple):
    path: str
    scratch: int  # elements of the "col" buffer
    steps: tuple


def grid_size(total, max_blocks):
    """Blocks for ``total`` threads: one thread per element, capped at ``max_blocks``.

    The kernels loop with a grid stride, so a capped grid still covers every element.
    """
    return int(max(1, min(-(-total // BLOCK), max_blocks)))


def _kernel(name, total, max_blocks, *args):
    # int(): sizes may arrive as numpy integers; launchers tell pointers from ints by Ref.
    args = tuple(a if isinstance(a, Ref) else int(a) for a in (total, *args))
    return Kernel(name, grid_size(total, max_blocks), BLOCK, args)


def _index32(index64, *extents):
    """1 when every extent (the sizes of the buffers a call indexes, bounds on its coordinates)
    fits an int, so the kernels may do their index arithmetic in int; ``index64`` forces long
    long (tests)."""
    return int(not index64 and max(extents) <= INT_MAX)


def _images_per_chunk(per_image, n, scratch_budget):
    # Forced paths (tests) take one image per chunk even beyond the budget; the automatic choice
    # never plans an image whose scratch exceeds it.
    return max(1, min(n, scratch_budget // per_image))


def _matmul(w, w_shape, transpose_w, x, x_shape, c):
    """Steps for ``c[i, g] = op(w[g]) @ x[i, g]`` on C-contiguous row-major blocks: ``w`` of
    ``w_shape`` (G, M, K), or (G, K, M) when ``transpose_w``, ``x`` of ``x_shape`` (B, G, K, N),
    ``c`` (B, G, M, N).

    Row-major C = op(W) X is column-major C^T = X^T op(W)^T, and a row-major matrix read
    column-major is its transpose: so cuBLAS's A is X untransposed, its B is W, transposed
    exactly when W is not stored as (M, K). One call batches over the groups for each image, or
    over the images for each group, whichever needs fewer calls.
    """
    groups, rows, cols = w_shape
    m_, k_ = (cols, rows) if transpose_w else (rows, cols)
    images, _, _, n_ = x_shape
    if max(m_, n_, k_) > INT_MAX:
        raise ValueError("a GEMM dimension exceeds cuBLAS's 32-bit sizes")
    ldb = m_ if transpose_w else k_
    per_x, per_c, per_w = k_ * n_, m_ * n_, m_ * k_
    if images <= groups:  # for each image, a batch over its groups
        return tuple(Gemm(False, transpose_w, n_, m_, k_,
                          Ref(x.buf, x.offset + i * groups * per_x), max(1, n_), per_x,
                          w, max(1, ldb), per_w,
                          Ref(c.buf, c.offset + i * groups * per_c), max(1, n_), per_c, groups)
                     for i in range(images))
    return tuple(Gemm(False, transpose_w, n_, m_, k_,  # for each group, a batch over the images
                      Ref(x.buf, x.offset + g * per_x), max(1, n_), groups * per_x,
                      Ref(w.buf, w.offset + g * per_w), max(1, ldb), 0,
                      Ref(c.buf, c.offset + g * per_c), max(1, n_), groups * per_c, images)
                 for g in range(groups))


def conv2d_paths(x_shape, w_shape, out_shape, stride, pad, groups):
    """The paths that can compute this conv2d, the automatic choice first ("direct" can compute
    every case; it is chosen for depthwise-like layers)."""
    h, wd = x_shape[2:]
    c_out, cig, kh, kw = w_shape
    oh, ow = out_shape[2:]
    paths = []
    if cig == 1 and c_out // groups <= DIRECT_MAX_COG:
        paths.append("direct")
    if (kh, kw) == (1, 1) and stride == (1, 1) and pad == (0, 0) and (oh, ow) == (h, wd):
        paths.append("gemm")
    paths.append("im2col_gemm")
    if max(c_out, cig * kh * kw, oh * ow, h * wd) > INT_MAX:  # beyond cuBLAS's sizes
        paths = [p for p in paths if p == "direct"]
    if "direct" not in paths:
        paths.append("direct")
    return paths


def conv_transpose2d_paths(x_shape, w_shape, out_shape, stride, pad, dilation, groups):
    """The paths that can compute this conv_transpose2d, the automatic choice first."""
    c_in, h, wd = x_shape[1:]
    _, cog, kh, kw = w_shape
    oh, ow = out_shape[2:]
    paths = []
    if c_in // groups == 1 and cog <= DIRECT_MAX_COG:
        paths.append("direct")
    if (kh, kw) == (1, 1) and stride == (1, 1) and pad == (0, 0) and (oh, ow) == (h, wd):
        paths.append("gemm")
    # Dilation 1: each output phase has its own taps, found without trying the others.
    paths.append("gemm_col2im_subpixel" if dilation == (1, 1) else "gemm_col2im")
    if dilation == (1, 1):
        paths.append("gemm_col2im")
    if max(c_in, cog * kh * kw, h * wd) > INT_MAX:  # beyond cuBLAS's sizes
        paths = [p for p in paths if p == "direct"]
    if "direct" not in paths:
        paths.append("direct")
    return paths


def plan_conv2d(x_shape, w_shape, out_shape, stride, pad, dilation, groups, has_bias,
                max_blocks, scratch_budget, path=None, index64=False):
    """Plan for the conv2d kernel contract; ``path`` (default: the automatic choice) and
    ``index64``: tests."""
    n, c_in, h, wd = x_shape
    c_out, cig, kh, kw = w_shape
    oh, ow = out_shape[2:]
    (sh, sw), (ph, pw), (dh, dw) = stride, pad, dilation
    cog = c_out // groups
    per_image = c_in * kh * kw * oh * ow
    if path is None:
        path = conv2d_paths(x_shape, w_shape, out_shape, stride, pad, groups)[0]
        if path == "im2col_gemm" and per_image > scratch_budget:
            path = "direct"  # slower, but needs no scratch: one image's columns would not fit
    nb = _images_per_chunk(per_image, n, scratch_budget)
    col = nb * per_image if path == "im2col_gemm" else 0
    index32 = _index32(index64, n * c_in * h * wd, n * c_out * oh * ow, c_out * cig * kh * kw, col,
                       oh * sh + kh * dh + ph + h, ow * sw + kw * dw + pw + wd)

    def kernel(name, total, *args):
        return _kernel(name, total, max_blocks, *args, index32)

    bias_step = (kernel("add_bias", n * c_out * oh * ow, Ref("out"), Ref("bias"), c_out,
                        oh * ow),) if has_bias else ()
    if path == "direct":
        step = kernel("conv_direct", n * c_out * oh * ow, Ref("x"), Ref("w"), Ref("bias"),
                      Ref("out"), c_in, h, wd, c_out, kh, kw, oh, ow, sh, sw, ph, pw, dh, dw,
                      groups, int(has_bias))
        return Plan(path, 0, (step,))
    if path == "gemm":
        steps = _matmul(Ref("w"), (groups, cog, cig), False, Ref("x"), (n, groups, cig, h * wd),
                        Ref("out"))
        return Plan(path, 0, (*steps, *bias_step))
    if path != "im2col_gemm":
        raise ValueError(f"unknown conv2d path {path!r}")
    k = cig * kh * kw
    steps = []
    for n0 in range(0, n, nb):
        m = min(nb, n - n0)
        steps.append(kernel("im2col", m * per_image, Ref("x", n0 * c_in * h * wd), Ref("col"),
                            h, wd, kh, kw, oh, ow, sh, sw, ph, pw, dh, dw))
        steps.extend(_matmul(Ref("w"), (groups, cog, k), False, Ref("col"),
                             (m, groups, k, oh * ow), Ref("out", n0 * c_out * oh * ow)))
    return Plan(path, nb * per_image, (*steps, *bias_step))


def plan_conv_transpose2d(x_shape, w_shape, out_shape, stride, pad, dilation, groups, has_bias,
                          max_blocks, scratch_budget, path=None, index64=False):
    """Plan for the conv_transpose2d kernel contract (GEMM ``W^T X``, then col2im as a gather);
    ``path`` and ``index64`` as for ``plan_conv2d``."""
    n, c_in, h, wd = x_shape
    _, cog, kh, kw = w_shape
    oh, ow = out_shape[2:]
    (sh, sw), (ph, pw), (dh, dw) = stride, pad, dilation
    cig = c_in // groups
    c_out = cog * groups
    per_image = c_out * kh * kw * h * wd
    if path is None:
        path = conv_transpose2d_paths(x_shape, w_shape, out_shape, stride, pad, dilation,
                                      groups)[0]
        if path.startswith("gemm_col2im") and per_image > scratch_budget:
            path = "direct"  # slower, but needs no scratch: one image's columns would not fit
    nb = _images_per_chunk(per_image, n, scratch_budget)
    col = nb * per_image if path.startswith("gemm_col2im") else 0
    index32 = _index32(index64, n * c_in * h * wd, n * c_out * oh * ow, c_in * cog * kh * kw, col,
                       oh + ph + kh * dh + h * sh, ow + pw + kw * dw + wd * sw)

    def kernel(name, total, *args):
        return _kernel(name, total, max_blocks, *args, index32)

    if path == "direct":
        step = kernel("conv_transpose_direct", n * c_out * oh * ow, Ref("x"), Ref("w"),
                      Ref("bias"), Ref("out"), c_in, h, wd, c_out, kh, kw, oh, ow, sh, sw, ph, pw,
                      dh, dw, groups, int(has_bias))
        return Plan(path, 0, (step,))
    if path == "gemm":
        steps = list(_matmul(Ref("w"), (groups, cig, cog), True, Ref("x"),
                             (n, groups, cig, h * wd), Ref("out")))
        if has_bias:
            steps.append(kernel("add_bias", n * c_out * oh * ow, Ref("out"), Ref("bias"), c_out,
                                oh * ow))
        return Plan(path, 0, tuple(steps))
    if path == "gemm_col2im_subpixel" and dilation != (1, 1):
        raise ValueError("the sub-pixel col2im needs dilation 1")
    if path not in ("gemm_col2im", "gemm_col2im_subpixel"):
        raise ValueError(f"unknown conv_transpose2d path {path!r}")
    rows = cog * kh * kw
    steps = []
    for n0 in range(0, n, nb):
        m = min(nb, n - n0)
        steps.extend(_matmul(Ref("w"), (groups, cig, rows), True, Ref("x", n0 * c_in * h * wd),
                             (m, groups, cig, h * wd), Ref("col")))
        total = m * c_out * oh * ow
        out = Ref("out", n0 * c_out * oh * ow)
        if path == "gemm_col2im_subpixel":
            steps.append(kernel("col2im_subpixel", total, Ref("col"), Ref("bias"), out, c_out, h,
                                wd, kh, kw, oh, ow, sh, sw, ph, pw, int(has_bias)))
        else:
            steps.append(kernel("col2im", total, Ref("col"), Ref("bias"), out, c_out, h, wd, kh,
                                kw, oh, ow, sh, sw, ph, pw, dh, dw, int(has_bias)))
    return Plan(path, nb * per_image, tuple(steps))


def execute(plan, buffers, launch, gemm):
    """Run ``plan`` on ``buffers`` (name -> C-contiguous array, "col" included when
    ``plan.scratch``): kernels with ``launch(name, grid, block, args)``, where each Ref became a
    flat view starting at its offset, and GEMMs with ``gemm(step, a, b, c)``, where a, b, c are
    the flat buffers of the step's refs."""
    flat = {name: a.reshape(-1) for name, a in buffers.items()}
    for step in plan.steps:
        if isinstance(step, Kernel):
            args = tuple(flat[a.buf][a.offset:] if isinstance(a, Ref) else a for a in step.args)
            launch(step.name, step.grid, step.block, args)
        else:
            gemm(step, flat[step.a.buf], flat[step.b.buf], flat[step.c.buf])
