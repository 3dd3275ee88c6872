"""convcore: fast, exact convolutions with PyTorch's semantics for numpy (and cupy) arrays."""
from convcore import nn
from convcore._info import __version__, show_config
from convcore._threads import get_num_threads, set_num_threads
from convcore.api import conv1d, conv2d, conv_transpose1d, conv_transpose2d

__all__ = [
    "conv1d", "conv2d", "conv_transpose1d", "conv_transpose2d", "nn",
    "set_num_threads", "get_num_threads", "show_config", "__version__",
]
