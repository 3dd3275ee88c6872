"""convcore's Python API (installed as ``convcore.api``): argument rules, dtype policy, dispatch, modules."""
from . import nn
from .functional import conv1d, conv2d, conv_transpose1d, conv_transpose2d

__all__ = ["conv1d", "conv2d", "conv_transpose1d", "conv_transpose2d", "nn"]
