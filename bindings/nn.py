"""torch.nn-style modules holding numpy (or cupy) parameters.

Constructors take torch's arguments, order and defaults, check what torch checks at construction
(the rest is checked by the functional call at forward time, as in torch), and initialise
weight and bias from U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in = weight.shape[1] * prod(kernel).
``seed`` (an int, None or a ``numpy.random.Generator``) makes the initialisation reproducible.
"""
import math
from collections.abc import Iterable

import numpy as np

from convcore import _shapes

from . import _args, functional
from ._arrays import FLOAT_DTYPES, is_cupy

__all__ = ["Conv1d", "Conv2d", "ConvTranspose1d", "ConvTranspose2d"]


def _ntuple(value, n):
    """torch's _ntuple: an iterable is kept as given (validated at forward), a scalar repeated."""
    if isinstance(value, Iterable) and not isinstance(value, str):
        return tuple(value)
    return (value,) * n


class _ConvNd:
    _nd = 2
    _transposed = False

    def __init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                 bias, padding_mode, output_padding, device, dtype, seed):
        name = type(self).__name__
        in_channels = _args.as_int(in_channels, "in_channels", name)
        out_channels = _args.as_int(out_channels, "out_channels", name)
        groups = _args.as_int(groups, "groups", name)
        if groups <= 0:
            raise ValueError("groups must be a positive integer")
        if in_channels < 0 or out_channels < 0:
            raise ValueError(f"{name}: in_channels and out_channels must be >= 0, "
                             f"got {in_channels} and {out_channels}")
        if in_channels % groups != 0:
            raise ValueError("in_channels must be divisible by groups")
        if out_channels % groups != 0:
            raise ValueError("out_channels must be divisible by groups")
        kernel_size = _args.as_tuple(kernel_size, self._nd, "kernel_size", name)
        if any(k <= 0 for k in kernel_size):
            raise ValueError(f"{name}: kernel_size must be positive, got {kernel_size}")
        stride = _ntuple(stride, self._nd)
        if isinstance(padding, str):
            if self._transposed:
                raise TypeError(f"{name}: padding must be an int or a tuple of ints, not str")
            if padding not in _args.PADDING_STRINGS:
                raise ValueError(
                    f"Invalid padding string {padding!r}, should be one of {set(_args.PADDING_STRINGS)}"
                )
            if padding == "same" and any(s != 1 for s in stride):
                raise ValueError("padding='same' is not supported for strided convolutions")
        else:
            padding = _ntuple(padding, self._nd)
        if not isinstance(padding_mode, str) or padding_mode not in _args.PADDING_MODES:
            raise ValueError(
                f"padding_mode must be one of {set(_args.PADDING_MODES)}, but got padding_mode={padding_mode!r}"
            )
        if self._transposed and padding_mode != "zeros":
            raise ValueError(f'Only "zeros" padding mode is supported for {name}')
        dtype = np.dtype(np.float32 if dtype is None else dtype)
        if dtype not in FLOAT_DTYPES:
            raise TypeError(f"{name}: dtype must be float32 or float64, got {dtype}")

        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.dilation, self.groups, self.padding_mode = _ntuple(dilation, self._nd), groups, padding_mode
        self.output_padding = _ntuple(output_padding, self._nd)
        if self._transposed:
            shape = (in_channels, out_channels // groups, *kernel_size)
        else:
            shape = (out_channels, in_channels // groups, *kernel_size)
        rng = np.random.default_rng(seed)
        fan_in = shape[1] * math.prod(kernel_size)
        bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        self.weight = rng.uniform(-bound, bound, size=shape).astype(dtype)
        self.bias = rng.uniform(-bound, bound, size=out_channels).astype(dtype) if bias else None
        if device is not None:
            self.to(device)

    def to(self, target):
        """Cast parameters to a dtype (``np.float64``, ...) or move them to ``"cpu"``/``"cuda"``."""
        if isinstance(target, str):
            if target == "cpu":
                convert = lambda a: a.get() if is_cupy(a) else a  # noqa: E731
            elif target.startswith("cuda"):
                import cupy

                convert = cupy.asarray
            else:
                raise ValueError(f"device must be 'cpu' or 'cuda', got {target!r}")
        else:
            dtype = np.dtype(target)
            if dtype not in FLOAT_DTYPES:
                raise TypeError(f"dtype must be float32 or float64, got {dtype}")
            convert = lambda a: a.astype(dtype)  # noqa: E731
        self.weight = convert(self.weight)
        if self.bias is not None:
            self.bias = convert(self.bias)
        return self

    def double(self):
        return self.to(np.float64)

    def float(self):
        return self.to(np.float32)

    def cpu(self):
        return self.to("cpu")

    def cuda(self):
        return self.to("cuda")

    def parameters(self):
        return [self.weight] if self.bias is None else [self.weight, self.bias]

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def extra_repr(self):
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0,) * self._nd:
            s += f", padding={self.padding}"
        if self.dilation != (1,) * self._nd:
            s += f", dilation={self.dilation}"
        if self.output_padding != (0,) * self._nd:
            s += f", output_padding={self.output_padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        return s

    def __repr__(self):
        return f"{type(self).__name__}({self.extra_repr()})"


class _Conv(_ConvNd):
    def forward(self, input):
        fn = functional.conv1d if self._nd == 1 else functional.conv2d
        return fn(input, self.weight, self.bias, self.stride, self.padding, self.dilation,
                  self.groups, self.padding_mode)


class _ConvTranspose(_ConvNd):
    _transposed = True

    def forward(self, input, output_size=None):
        fn = functional.conv_transpose1d if self._nd == 1 else functional.conv_transpose2d
        output_padding = self.output_padding
        if output_size is not None:
            output_padding = self._output_padding(input, output_size)
        return fn(input, self.weight, self.bias, self.stride, self.padding, output_padding,
                  self.groups, self.dilation)

    def _output_padding(self, input, output_size):
        """output_padding that yields ``output_size`` (which may include N and C), as torch computes it."""
        name, nd = type(self).__name__, self._nd
        stride = _args.as_tuple(self.stride, nd, "stride", name)
        padding = _args.as_tuple(self.padding, nd, "padding", name)
        dilation = _args.as_tuple(self.dilation, nd, "dilation", name)
        ndim = np.ndim(input)
        if not isinstance(output_size, Iterable):
            raise TypeError(f"{name}: output_size must be a sequence of ints, got {type(output_size).__name__}")
        if not isinstance(output_size, (tuple, list)):
            output_size = list(output_size)
        n_lead = 2 if ndim == nd + 2 else 1
        if len(output_size) == n_lead + nd:
            output_size = output_size[n_lead:]
        if len(output_size) != nd:
            raise ValueError(
                f"ConvTranspose{nd}D: for {ndim}D input, output_size must have {nd} or "
                f"{n_lead + nd} elements (got {len(output_size)})"
            )
        sizes = [_args.as_int(s, "output_size", name) for s in output_size]
        in_sizes = np.shape(input)[ndim - nd:]
        mins = [_shapes.conv_transpose_out_size(i, k, s, p, 0, d)
                for i, s, p, d, k in zip(in_sizes, stride, padding, dilation, self.kernel_size)]
        maxs = [m + s - 1 for m, s in zip(mins, stride)]
        if any(o < lo or o > hi for o, lo, hi in zip(sizes, mins, maxs)):
            raise ValueError(
                f"requested an output size of {output_size}, but valid sizes range from {mins} to "
                f"{maxs} (for an input of {list(in_sizes)})"
            )
        return tuple(o - m for o, m in zip(sizes, mins))


class Conv1d(_Conv):
    """1-D convolution module with torch.nn.Conv1d's constructor."""
    _nd = 1

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, padding_mode="zeros", device=None, dtype=None, *, seed=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                         bias, padding_mode, 0, device, dtype, seed)


class Conv2d(_Conv):
    """2-D convolution module with torch.nn.Conv2d's constructor."""
    _nd = 2

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, padding_mode="zeros", device=None, dtype=None, *, seed=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                         bias, padding_mode, 0, device, dtype, seed)


class ConvTranspose1d(_ConvTranspose):
    """1-D transposed convolution module with torch.nn.ConvTranspose1d's constructor;
    ``m(x, output_size=...)`` picks output_padding as torch does."""
    _nd = 1

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0,
                 groups=1, bias=True, dilation=1, padding_mode="zeros", device=None, dtype=None, *, seed=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                         bias, padding_mode, output_padding, device, dtype, seed)


class ConvTranspose2d(_ConvTranspose):
    """2-D transposed convolution module with torch.nn.ConvTranspose2d's constructor;
    ``m(x, output_size=...)`` picks output_padding as torch does."""
    _nd = 2

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0,
                 groups=1, bias=True, dilation=1, padding_mode="zeros", device=None, dtype=None, *, seed=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                         bias, padding_mode, output_padding, device, dtype, seed)
