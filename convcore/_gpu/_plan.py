"""Launch plans for the GPU kernels: which kernels, in which order, with which grid and arguments.

Pure Python on shapes (no cupy): the cupy launcher in ``__init__.py`` executes a plan on the device,
and the host-emulation test executes the very same plan with the kernels compiled by the host C++
compiler, so the launch arithmetic below is tested without a GPU.

A plan is a tuple of steps over named buffers: "x", "w", "bias", "out" (the caller's arrays, all
C-contiguous) and "col" (scratch of ``Plan.scratch`` elements). A ``Ref`` is a buffer plus an
element offset; a ``Matmul`` reads and writes C-contiguous views starting at its refs.
"""
from typing import NamedTuple

BLOCK = 256
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


class Matmul(NamedTuple):
    """``c = (a^T if transpose_a else a) @ b`` with numpy's batched/broadcast matmul rules.

    With ``transpose_a`` the last two axes of the view ``a_shape`` are swapped.
    """
    a: Ref
    a_shape: tuple
    b: Ref
    b_shape: tuple
    c: Ref
    c_shape: tuple
    transpose_a: bool = False


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


def _images_per_chunk(per_image, n, scratch_budget):
    # Forced paths (tests) take one image per chunk even beyond the budget; the automatic choice
    # never plans an image whose scratch exceeds it.
    return max(1, min(n, scratch_budget // per_image))


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
    if "direct" not in paths:
        paths.append("direct")
    return paths


def plan_conv2d(x_shape, w_shape, out_shape, stride, pad, dilation, groups, has_bias,
                max_blocks, scratch_budget, path=None):
    """Plan for the conv2d kernel contract; ``path`` (default: the automatic choice): tests."""
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
    bias_step = (_kernel("add_bias", n * c_out * oh * ow, max_blocks, Ref("out"), Ref("bias"),
                         c_out, oh * ow),) if has_bias else ()
    if path == "direct":
        step = _kernel("conv_direct", n * c_out * oh * ow, max_blocks, Ref("x"), Ref("w"),
                       Ref("bias"), Ref("out"), c_in, h, wd, c_out, kh, kw, oh, ow,
                       sh, sw, ph, pw, dh, dw, groups, int(has_bias))
        return Plan(path, 0, (step,))
    if path == "gemm":
        step = Matmul(Ref("w"), (groups, cog, cig), Ref("x"), (n, groups, cig, h * wd),
                      Ref("out"), (n, groups, cog, oh * ow))
        return Plan(path, 0, (step, *bias_step))
    if path != "im2col_gemm":
        raise ValueError(f"unknown conv2d path {path!r}")
    k = cig * kh * kw
    nb = _images_per_chunk(per_image, n, scratch_budget)
    steps = []
    for n0 in range(0, n, nb):
        m = min(nb, n - n0)
        steps.append(_kernel("im2col", m * per_image, max_blocks, Ref("x", n0 * c_in * h * wd),
                             Ref("col"), h, wd, kh, kw, oh, ow, sh, sw, ph, pw, dh, dw))
        steps.append(Matmul(Ref("w"), (groups, cog, k), Ref("col"), (m, groups, k, oh * ow),
                            Ref("out", n0 * c_out * oh * ow), (m, groups, cog, oh * ow)))
    return Plan(path, nb * per_image, (*steps, *bias_step))


def plan_conv_transpose2d(x_shape, w_shape, out_shape, stride, pad, dilation, groups, has_bias,
                          max_blocks, scratch_budget, path=None):
    """Plan for the conv_transpose2d kernel contract (GEMM ``W^T X``, then col2im as a gather)."""
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
    if path == "direct":
        step = _kernel("conv_transpose_direct", n * c_out * oh * ow, max_blocks, Ref("x"),
                       Ref("w"), Ref("bias"), Ref("out"), c_in, h, wd, c_out, kh, kw, oh, ow,
                       sh, sw, ph, pw, dh, dw, groups, int(has_bias))
        return Plan(path, 0, (step,))
    if path == "gemm":
        steps = [Matmul(Ref("w"), (groups, cig, cog), Ref("x"), (n, groups, cig, h * wd),
                        Ref("out"), (n, groups, cog, oh * ow), transpose_a=True)]
        if has_bias:
            steps.append(_kernel("add_bias", n * c_out * oh * ow, max_blocks, Ref("out"),
                                 Ref("bias"), c_out, oh * ow))
        return Plan(path, 0, tuple(steps))
    if path == "gemm_col2im_subpixel" and dilation != (1, 1):
        raise ValueError("the sub-pixel col2im needs dilation 1")
    if path not in ("gemm_col2im", "gemm_col2im_subpixel"):
        raise ValueError(f"unknown conv_transpose2d path {path!r}")
    rows = cog * kh * kw
    nb = _images_per_chunk(per_image, n, scratch_budget)
    steps = []
    for n0 in range(0, n, nb):
        m = min(nb, n - n0)
        steps.append(Matmul(Ref("w"), (groups, cig, rows), Ref("x", n0 * c_in * h * wd),
                            (m, groups, cig, h * wd), Ref("col"), (m, groups, rows, h * wd),
                            transpose_a=True))
        total = m * c_out * oh * ow
        out = Ref("out", n0 * c_out * oh * ow)
        if path == "gemm_col2im_subpixel":
            steps.append(_kernel("col2im_subpixel", total, max_blocks, Ref("col"), Ref("bias"),
                                 out, c_out, h, wd, kh, kw, oh, ow, sh, sw, ph, pw, int(has_bias)))
        else:
            steps.append(_kernel("col2im", total, max_blocks, Ref("col"), Ref("bias"), out,
                                 c_out, h, wd, kh, kw, oh, ow, sh, sw, ph, pw, dh, dw,
                                 int(has_bias)))
    return Plan(path, nb * per_image, tuple(steps))


def execute(plan, buffers, xp, launch):
    """Run ``plan`` on ``buffers`` (name -> C-contiguous array of module ``xp``, "col" included
    when ``plan.scratch``): matmuls with ``xp.matmul``, kernels with ``launch(name, grid, block,
    args)`` where each Ref became a flat view starting at its offset."""
    flat = {name: a.reshape(-1) for name, a in buffers.items()}

    def view(ref, shape):
        size = 1
        for s in shape:
            size *= s
        return flat[ref.buf][ref.offset:ref.offset + size].reshape(shape)

    for step in plan.steps:
        if isinstance(step, Kernel):
            args = tuple(flat[a.buf][a.offset:] if isinstance(a, Ref) else a for a in step.args)
            launch(step.name, step.grid, step.block, args)
        else:
            a = view(step.a, step.a_shape)
            if step.transpose_a:
                a = a.swapaxes(-1, -2)
            xp.matmul(a, view(step.b, step.b_shape), out=view(step.c, step.c_shape))
