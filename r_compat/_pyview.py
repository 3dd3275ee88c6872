"""R torch's conv API seen from Python: R-style arguments in, numpy arrays out.

Every call goes through the R functions of rtorch.R in the embedded R session, so the R semantics
(recycling, truncation, construction checks, the output_size algorithm, error texts and classes)
are the R side's, not a copy. Python ints and floats are sent as R doubles, lists as double
vectors, strings as character vectors, bools as logicals, None as NULL. float32/float64 numpy
arrays become tensors of their dtype; other arrays become R doubles, hence float32 tensors.
R errors are raised as :class:`RError` (``.message``, ``.classes``).
"""
from . import _bridge


class RModule:
    """An R torch-style module (nn_conv2d, nn_conv_transpose1d/2d) built in the R session."""

    def __init__(self, constructor, args, kwargs):
        self.r_object = _bridge.call(constructor, *args, **kwargs)

    def __call__(self, input, output_size=None):
        """``m(input)`` or ``m(input, output_size = ...)``; a numpy array of the module's dtype."""
        if output_size is None:
            return _bridge.call(self.r_object, input)
        return _bridge.call(self.r_object, input, output_size=output_size)

    forward = __call__

    def _parameter(self, name):
        return _bridge.call(".module_dollar", self.r_object, name)

    def _set_parameter(self, name, value):
        _bridge.call(".cc_set_parameter", self.r_object, name, value)

    weight = property(lambda self: self._parameter("weight"),
                      lambda self, v: self._set_parameter("weight", v),
                      doc="m$weight as numpy; assigning does with_no_grad(m$weight$copy_(value))")
    bias = property(lambda self: self._parameter("bias"),
                    lambda self, v: self._set_parameter("bias", v),
                    doc="m$bias as numpy (None without bias); assigning copies in place")

    def to(self, dtype):
        """``m$to(dtype = ...)`` with dtype "float32" or "float64"; returns self."""
        _bridge.call(self._parameter("to"), dtype=dtype)
        return self


def nn_conv_transpose2d(*args, **kwargs):
    """R torch's nn_conv_transpose2d(in_channels, out_channels, kernel_size, stride = 1,
    padding = 0, output_padding = 0, groups = 1, bias = TRUE, dilation = 1,
    padding_mode = "zeros")."""
    return RModule("nn_conv_transpose2d", args, kwargs)


def nn_conv_transpose1d(*args, **kwargs):
    """R torch's nn_conv_transpose1d (same arguments as nn_conv_transpose2d)."""
    return RModule("nn_conv_transpose1d", args, kwargs)


def nn_conv2d(*args, **kwargs):
    """R torch's nn_conv2d(in_channels, out_channels, kernel_size, stride = 1, padding = 0,
    dilation = 1, groups = 1, bias = TRUE, padding_mode = "zeros")."""
    return RModule("nn_conv2d", args, kwargs)


def nnf_conv_transpose2d(*args, **kwargs):
    """R torch's nnf_conv_transpose2d(input, weight, bias = NULL, stride = 1, padding = 0,
    output_padding = 0, groups = 1, dilation = 1)."""
    return _bridge.call("nnf_conv_transpose2d", *args, **kwargs)


def nnf_conv_transpose1d(*args, **kwargs):
    """R torch's nnf_conv_transpose1d (same arguments as nnf_conv_transpose2d)."""
    return _bridge.call("nnf_conv_transpose1d", *args, **kwargs)


def nnf_conv2d(*args, **kwargs):
    """R torch's nnf_conv2d(input, weight, bias = NULL, stride = 1, padding = 0, dilation = 1,
    groups = 1)."""
    return _bridge.call("nnf_conv2d", *args, **kwargs)
