"""Private CPU kernels (Cython, nogil, OpenMP). Arrays in, arrays out: no defaults, no validation.

Contract, guaranteed by the API layer (``convcore.api``) for every call:

* ``x``: C-contiguous ``(N, C_in, H, W)``; ``w`` and ``out`` C-contiguous, all of one dtype
  (float32 or float64). 1-D ops arrive as 2-D with ``H == 1``.
* ``bias``: C-contiguous 1-D of length ``C_out``, or of length 0 for "no bias".
* ``out``: allocated by the caller with the final output shape; the kernel overwrites all of it.
* ``stride >= 1``, ``dilation >= 1``, ``pad >= 0``, ``groups`` divides both channel counts,
  every size >= 1 except ``N`` (N == 0 is handled before the kernel is called).

``conv2d(x, w, bias, out, sh, sw, ph, pw, dh, dw, groups, num_threads)``
    ``w``: ``(C_out, C_in/groups, KH, KW)``.
    ``out[n, co, oh, ow] = bias[co] + sum x[n, g*Cig + ci, oh*sh - ph + kh*dh, ow*sw - pw + kw*dw]
    * w[co, ci, kh, kw]`` with ``g = co // (C_out/groups)`` and x read as 0 outside the input.
    ``(ph, pw)`` is the padding before the first row/column; the output shape in ``out``
    fixes the padding at the end (this is how asymmetric 'same' padding arrives).

``conv_transpose2d(x, w, bias, out, sh, sw, ph, pw, dh, dw, groups, num_threads)``
    ``w``: ``(C_in, C_out/groups, KH, KW)``. The adjoint of conv2d:
    ``out[n, g*Cog + co, ih*sh - ph + kh*dh, iw*sw - pw + kw*dw] += x[n, g*Cig + ci, ih, iw]
    * w[g*Cig + ci, co, kh, kw]`` for positions inside ``out``, plus ``bias[co]``.
    The output size (including output_padding) is fixed by ``out``'s shape.

Results are bitwise identical for every ``num_threads``.
"""
