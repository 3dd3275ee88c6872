"""R torch 0.17.0's convolution API over convcore, in rpy2's embedded R session.

Installed as ``convcore.r_compat``; needs R and ``rpy2>=3.5.17,<3.6`` (``pip install
'convcore[r]'``). rpy2 is imported when first used, never by ``import convcore``.

``install()`` defines, in an environment attached to R's search path as "convcore":
``nn_conv_transpose2d``, ``nn_conv_transpose1d``, ``nn_conv2d`` (callable modules: ``m(x)``,
``m(x, output_size = ...)``, ``m$forward(...)``, ``m$weight``, ``m$bias`` (NULL without bias),
``m$parameters``, ``m$to(dtype = ...)``), ``nnf_conv_transpose2d``, ``nnf_conv_transpose1d``,
``nnf_conv2d``, ``nnf_pad`` (R torch's argument order), ``torch_tensor``, ``torch_randn``,
``torch_manual_seed``, ``torch_float32``/``torch_float``, ``torch_float64``/``torch_double``,
``as_array``, ``with_no_grad``, and a light tensor with ``$size(dim)``, ``$dim()``, ``$shape``,
``$dtype``, ``$numel()``, ``$detach()``, ``$cpu()``, ``$to(dtype = )``, ``$copy_()``, ``$item()``.
The R layer (rtorch.R) is R torch's R code for these functions; every libtorch call it makes is
answered by Python (_ops.py), which converts the arguments as R torch's C++ layer does and leaves
the arithmetic to convcore. Errors are R conditions with R torch's message and class vector.

R torch's behaviour reproduced here, quirks included (each one is tested):

* Recycling: a scalar argument is repeated to the number of spatial dims (``nn_util_pair``);
  a vector of length > 1 is kept as given, whatever its length, and fails at forward if wrong
  ("expected stride to be a single integer value or a list of 2 values ...").
* Truncation: numbers are R doubles and reach libtorch through an int64 cast, so 2.7 acts as 2
  and a fractional output_padding derived from ``output_size`` (9.5 -> 0.5) acts as 0.
* Construction checks, in this order, class ``c("value_error", "rlang_error", "error",
  "condition")``: transposed modules: ``padding_mode != "zeros"`` -> "Only `zeros` padding is
  supported."; then "`in_channels` must be divisible by groups", "`out_channels` must be
  divisible by groups"; then for nn_conv2d an unknown padding_mode -> "padding_mode must be one
  of [zeros, reflect, replicate, circular]," (R torch loses the rest of the message).
  ``groups = 0`` fails with R's own "missing value where TRUE/FALSE needed"; a negative groups
  passes the checks (R's ``%%``) and fails creating the weight ("Trying to create tensor with
  negative dimension ...", a C++ error).
* Everything else (negative padding, zero stride, too large output_padding, a wrong tuple
  length, ``"same"`` with stride > 1, an unknown padding string, a string padding with a
  non-"zeros" padding_mode: "Can't convert argument:pad") passes construction and fails at
  forward with libtorch's text, class ``c("Rcpp::exception", "C++Error", "error", "condition")``.
* Parameters: weight ``(out, in/groups, *k)``, transposed ``(in, out/groups, *k)``; float32;
  weight then bias drawn from U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = weight dim 2 *
  prod(kernel). The generator is numpy's, seeded by ``torch_manual_seed``: R torch's values
  are not reproduced, only their distribution, shapes and dtype. Parameters require grad, so
  ``m$weight$copy_(t)`` must run inside ``with_no_grad()``, as in R torch.
* Arrays: ``torch_tensor(x)`` keeps shape and index meaning (R ``x[i, j, k, l]`` is element
  ``[i-1, j-1, k-1, l-1]``); R doubles become float32 (values rounded to float32) unless
  ``dtype = torch_float64()``; ``as_array()`` gives R doubles (a plain vector for 1-D tensors).
* ``output_size`` of the transposed modules (R torch's ``.output_padding``): ``k`` is
  ``input$dim() - 2`` (a batch dimension is assumed); ``k + 2`` entries lose their first two;
  any other length but ``k`` -> "output_size must have {k} or {k+2} elements (got {n})"; the
  valid range per dim is [min, min + stride - 1] with min = (in - 1) * stride - 2 * padding +
  kernel, **dilation ignored**; out of range -> "requested an output of size {output_size}, but
  valid", vectorised over all of output_size and joined with "\\n\u2022 " (message cut short as
  in R torch). So with dilation > 1 the result is larger than requested by (d - 1)(k - 1) and
  sizes PyTorch accepts can be refused; with a 3-D (unbatched) input to nn_conv_transpose2d a
  2-element output_size is refused and a 3-element one keeps only its last entry, checked
  against the last input dim with the first dim's stride/padding/kernel; the resulting
  one-element output_padding is then broadcast by libtorch to both dims.
* nn_conv2d with padding_mode reflect/replicate/circular pads with ``nnf_pad`` (at::pad's
  checks and texts) and convolves with padding 0; ``"same"``/``"valid"`` work with "zeros".

Not reproduced: R torch's random values (see above); tensors other than float32/float64 (R
integers and logicals become float32 tensors, where R torch would make int64/bool ones); autograd
and tensor arithmetic (the light tensor only carries data between the calls above). Error texts
come from libtorch's sources as checked against PyTorch and the recorded fixtures; R torch's
exact text for a non-numeric argument passed where libtorch takes integers is taken to be
"Can't convert argument:<name>" (recorded for ``pad``).

Python side: :func:`crosscheck` compares a recorded R torch case (or, with ``live=True``, the
real R package ``torch`` when installed) with r_compat; :func:`nn_conv_transpose2d` and the
other functions below give the same R API to Python code with numpy arrays (see _pyview.py).
"""
from ._bridge import RError, install
from ._crosscheck import CrossCheck, crosscheck, r_torch_available
from ._pyview import (
    RModule, nn_conv2d, nn_conv_transpose1d, nn_conv_transpose2d, nnf_conv2d, nnf_conv_transpose1d,
    nnf_conv_transpose2d,
)

__all__ = [
    "install", "crosscheck", "CrossCheck", "r_torch_available", "RError", "RModule",
    "nn_conv_transpose2d", "nn_conv_transpose1d", "nn_conv2d",
    "nnf_conv_transpose2d", "nnf_conv_transpose1d", "nnf_conv2d",
]
