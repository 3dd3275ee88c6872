"""convcore.nn modules against torch.nn: constructors, attributes, initialisation, forward, repr."""
import inspect
import math
import re
import warnings

import numpy as np
import pytest
import torch

import convcore
from apiutil import first_line
from convcore import nn

PAIRS = {
    "Conv1d": (nn.Conv1d, torch.nn.Conv1d),
    "Conv2d": (nn.Conv2d, torch.nn.Conv2d),
    "ConvTranspose1d": (nn.ConvTranspose1d, torch.nn.ConvTranspose1d),
    "ConvTranspose2d": (nn.ConvTranspose2d, torch.nn.ConvTranspose2d),
}
ND = {"Conv1d": 1, "Conv2d": 2, "ConvTranspose1d": 1, "ConvTranspose2d": 2}
ATTRS = ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "output_padding",
         "groups", "padding_mode")

# constructor arguments (positional, keyword) accepted by every class of the given kinds
CONFIGS = [
    ((4, 6, 3), {}),
    ((4, 6, 3), {"stride": 2, "padding": 1}),
    ((4, 6, 1), {"bias": False}),
    ((6, 9, 2), {"groups": 3, "dilation": 2}),
    ((6, 6, 3), {"groups": 6, "padding": 2}),
    ((4, 6, 3), {"padding_mode": "zeros"}),
]
CONFIGS_1D = [
    ((4, 6, [3]), {"stride": [2], "padding": (1,), "dilation": [2]}),
]
CONFIGS_2D = [
    ((4, 6, (3, 5)), {"stride": (2, 1), "padding": (4, 2)}),
    ((4, 6, [2, 3]), {"stride": [1, 3], "dilation": (3, 1), "bias": False}),
    ((4, 8, (1, 2)), {"groups": 2, "padding": [0, 1], "dilation": 2}),
]
CONV_ONLY = [
    ((4, 6, 3), {"padding": "same"}),
    ((4, 6, 4), {"padding": "same", "dilation": 3}),
    ((4, 6, 3), {"padding": "valid"}),
    ((4, 6, 3), {"padding": 2, "padding_mode": "reflect"}),
    ((4, 6, 3), {"padding": 1, "padding_mode": "replicate"}),
    ((4, 6, 3), {"padding": "same", "padding_mode": "circular"}),
]
TRANSPOSED_ONLY = [
    ((4, 6, 3), {"stride": 2, "output_padding": 1}),
    ((4, 6, 3), {"stride": 3, "padding": 1, "output_padding": 2, "dilation": 2}),
    ((4, 6, 3), {"dilation": 3, "output_padding": 2}),
]


def configs(name):
    cases = CONFIGS + (CONFIGS_2D if ND[name] == 2 else CONFIGS_1D)
    return cases + (TRANSPOSED_ONLY if "Transpose" in name else CONV_ONLY)


ALL = [pytest.param(name, args, kwargs, id=f"{name}-{i}")
       for name in PAIRS for i, (args, kwargs) in enumerate(configs(name))]


def make_pair(name, args, kwargs, dtype=np.float64, seed=0):
    """A convcore module and a torch module holding the same parameters."""
    ours_cls, torch_cls = PAIRS[name]
    ours = ours_cls(*args, **kwargs, dtype=dtype, seed=seed)
    theirs = torch_cls(*args, **kwargs, dtype=torch.float64 if dtype == np.float64 else torch.float32)
    with torch.no_grad():
        theirs.weight.copy_(torch.from_numpy(ours.weight))
        if ours.bias is not None:
            theirs.bias.copy_(torch.from_numpy(ours.bias))
    return ours, theirs


def _input(module, batch, spatial, dtype, seed=1):
    shape = (module.in_channels,) + (spatial,) * len(module.kernel_size)
    if batch is not None:
        shape = (batch,) + shape
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _torch_forward(module, x, **kwargs):
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Using padding='same'", category=UserWarning)
        return module(torch.from_numpy(x), **kwargs).numpy()


@pytest.mark.parametrize("name", PAIRS)
def test_constructor_signature_is_torchs(name):
    ours, theirs = (inspect.signature(c) for c in PAIRS[name])
    ours_params = list(ours.parameters.values())
    assert ours_params[-1].name == "seed" and ours_params[-1].kind is inspect.Parameter.KEYWORD_ONLY
    assert ours_params[-1].default is None
    strip = lambda ps: [(p.name, p.kind, p.default) for p in ps]  # noqa: E731
    assert strip(ours_params[:-1]) == strip(theirs.parameters.values())


@pytest.mark.parametrize("name, args, kwargs", ALL)
def test_attributes_and_parameter_shapes_are_torchs(name, args, kwargs):
    ours, theirs = make_pair(name, args, kwargs)
    for attr in ATTRS:
        assert getattr(ours, attr) == getattr(theirs, attr), attr
        assert type(getattr(ours, attr)) is type(getattr(theirs, attr)), attr
    assert ours.weight.shape == tuple(theirs.weight.shape)
    assert (ours.bias is None) == (theirs.bias is None)
    if ours.bias is not None:
        assert ours.bias.shape == tuple(theirs.bias.shape)
    assert [p.shape for p in ours.parameters()] == [tuple(p.shape) for p in theirs.parameters()]


@pytest.mark.parametrize("name, args, kwargs", ALL)
def test_repr_is_torchs(name, args, kwargs):
    ours, theirs = make_pair(name, args, kwargs)
    assert repr(ours) == repr(theirs)


@pytest.mark.parametrize("name, args, kwargs", ALL)
@pytest.mark.parametrize("batch", [None, 0, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_matches_torch(name, args, kwargs, batch, dtype):
    ours, theirs = make_pair(name, args, kwargs, dtype=dtype)
    x = _input(ours, batch, 7, dtype)
    got = ours(x)
    want = _torch_forward(theirs, x)
    assert got.dtype == dtype and got.shape == want.shape
    rtol, atol = (1e-5, 1e-5) if dtype == np.float32 else (1e-12, 1e-12)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


@pytest.mark.parametrize("name", PAIRS)
def test_default_dtype_and_float64(name):
    cls = PAIRS[name][0]
    m = cls(3, 6, 3, seed=0)
    assert m.weight.dtype == np.float32 and m.bias.dtype == np.float32
    m64 = cls(3, 6, 3, dtype=np.float64, seed=0)
    assert m64.weight.dtype == np.float64 and m64.bias.dtype == np.float64
    with pytest.raises(TypeError, match="dtype"):
        cls(3, 6, 3, dtype=np.int32)


@pytest.mark.parametrize("name, args, kwargs", ALL)
def test_init_bounds_follow_torchs_fan_in(name, args, kwargs):
    ours, theirs = make_pair(name, args, kwargs)
    fan_in, _ = torch.nn.init._calculate_fan_in_and_fan_out(theirs.weight)
    bound = 1 / math.sqrt(fan_in)
    assert np.abs(ours.weight).max() <= bound
    if ours.bias is not None:
        assert np.abs(ours.bias).max() <= bound


@pytest.mark.parametrize("name", PAIRS)
def test_init_fills_the_whole_range(name):
    m = PAIRS[name][0](16, 32, 3, seed=3)
    bound = 1 / math.sqrt(m.weight.shape[1] * math.prod(m.kernel_size))
    w = m.weight.astype(np.float64) / bound
    assert w.min() < -0.95 and w.max() > 0.95  # U(-bound, bound), not a narrower law
    assert abs(w.mean()) < 0.05 and abs(w.std() - 1 / math.sqrt(3)) < 0.03
    assert len(np.unique(m.bias)) == m.bias.size


@pytest.mark.parametrize("name", PAIRS)
def test_seeded_initialisation_is_reproducible(name):
    cls = PAIRS[name][0]
    a, b = cls(4, 6, 3, seed=42), cls(4, 6, 3, seed=42)
    np.testing.assert_array_equal(a.weight, b.weight)
    np.testing.assert_array_equal(a.bias, b.bias)
    c = cls(4, 6, 3, seed=np.random.default_rng(42))  # a Generator seeded alike draws alike
    np.testing.assert_array_equal(a.weight, c.weight)
    np.testing.assert_array_equal(a.bias, c.bias)
    assert not np.array_equal(a.weight, cls(4, 6, 3, seed=43).weight)
    gen = np.random.default_rng(7)
    first, second = cls(4, 6, 3, seed=gen), cls(4, 6, 3, seed=gen)  # the generator advances
    assert not np.array_equal(first.weight, second.weight)
    assert not np.array_equal(cls(4, 6, 3).weight, cls(4, 6, 3).weight)  # seed=None: fresh entropy


@pytest.mark.parametrize("name", PAIRS)
def test_to_float64(name):
    m = PAIRS[name][0](3, 6, 3, seed=0)
    w32, b32 = m.weight.copy(), m.bias.copy()
    assert m.to(np.float64) is m
    assert m.weight.dtype == np.float64 and m.bias.dtype == np.float64
    np.testing.assert_array_equal(m.weight, w32.astype(np.float64))
    np.testing.assert_array_equal(m.bias, b32.astype(np.float64))
    x = _input(m, 2, 6, np.float64)
    assert m(x).dtype == np.float64
    m.float()
    assert m.weight.dtype == np.float32 and m(x.astype(np.float32)).dtype == np.float32
    m.double()
    assert m.weight.dtype == np.float64
    with pytest.raises(TypeError, match="float32 or float64"):
        m.to(np.int64)
    with pytest.raises(TypeError, match="dtype"):
        m(x.astype(np.float32))  # parameters float64, input float32: mixed dtypes


# output_size for the transposed modules: (module args, kwargs, input spatial size, output_size)
OUTPUT_SIZES = [
    ("ConvTranspose2d", (16, 16, 3), {"stride": 2, "padding": 1}, 6, (12, 12)),
    ("ConvTranspose2d", (16, 16, 3), {"stride": 2, "padding": 1}, 6, (11, 11)),
    ("ConvTranspose2d", (4, 6, 3), {"stride": 3}, 5, (15, 17)),
    ("ConvTranspose2d", (4, 6, (3, 2)), {"stride": (2, 3), "dilation": (2, 1), "padding": (1, 0)}, 5, [11, 16]),
    ("ConvTranspose2d", (4, 6, 3), {"stride": 2, "output_padding": 1}, 5, (11, 11)),  # overrides output_padding
    ("ConvTranspose1d", (4, 6, 3), {"stride": 4}, 5, (20,)),
    ("ConvTranspose1d", (4, 6, 2), {"stride": 2, "padding": 1}, 5, [8]),
]


@pytest.mark.parametrize("name, args, kwargs, spatial, size", OUTPUT_SIZES)
@pytest.mark.parametrize("batch", [None, 2])
@pytest.mark.parametrize("with_leading", [False, True])
def test_output_size_matches_torch(name, args, kwargs, spatial, size, batch, with_leading):
    ours, theirs = make_pair(name, args, kwargs)
    x = _input(ours, batch, spatial, np.float64)
    if with_leading:  # output_size may carry the (N,) C dimensions, as x.shape does
        lead = (ours.out_channels,) if batch is None else (batch, ours.out_channels)
        size = type(size)(lead) + size
    got = ours(x, output_size=size)
    want = _torch_forward(theirs, x, output_size=size)
    assert got.shape == want.shape
    assert got.shape[-len(ours.kernel_size):] == tuple(size)[-len(ours.kernel_size):]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def _output_size_errors(batch, size):
    """The ValueError messages of torch's and convcore's ConvTranspose2d(4, 6, 3, stride=2,
    padding=1) for an output_size request (both must raise)."""
    ours, theirs = make_pair("ConvTranspose2d", (4, 6, 3), {"stride": 2, "padding": 1})
    x = _input(ours, batch, 6, np.float64)
    with pytest.raises(ValueError) as torch_exc:
        _torch_forward(theirs, x, output_size=size)
    with pytest.raises(ValueError) as exc:
        ours(x, output_size=size)
    return str(exc.value), first_line(torch_exc.value)


@pytest.mark.parametrize("batch", [None, 2])
@pytest.mark.parametrize("size", [(10, 10), (13, 12), (12, 13), (11, 14)])
def test_output_size_out_of_range(batch, size):
    ours, theirs = _output_size_errors(batch, size)
    # torch's message ends with a torch.Size; the part before it must be the same
    prefix = theirs.split(" (for an input of")[0]
    assert prefix == "requested an output size of (%d, %d), but valid sizes range from [11, 11] to [12, 12]" % size
    assert ours.startswith(prefix)


@pytest.mark.parametrize("batch, size", [(None, (1, 6, 11, 11)), (2, (6, 11, 11)), (2, (11,)),
                                         (None, (11, 11, 11, 11, 11))])
def test_output_size_wrong_length(batch, size):
    ours, theirs = _output_size_errors(batch, size)
    assert ours == theirs


def test_output_size_must_hold_ints():
    m = nn.ConvTranspose2d(4, 6, 3, stride=2, seed=0)
    x = np.ones((1, 4, 5, 5), np.float32)
    with pytest.raises(TypeError, match="output_size"):
        m(x, output_size=(11.0, 11))
    with pytest.raises(TypeError, match="output_size"):
        m(x, output_size=11)


# constructor errors torch raises as ValueError at construction time: (class, args, kwargs, regex)
CONSTRUCTOR_ERRORS = [
    ("Conv2d", (4, 6, 3), {"groups": 0}, r"^groups must be a positive integer$"),
    ("ConvTranspose1d", (4, 6, 3), {"groups": -1}, r"^groups must be a positive integer$"),
    ("Conv2d", (4, 6, 3), {"groups": 3}, r"^in_channels must be divisible by groups$"),
    ("ConvTranspose2d", (4, 6, 3), {"groups": 4}, r"^out_channels must be divisible by groups$"),
    ("Conv1d", (4, 6, 3), {"padding": "full"}, r"^Invalid padding string 'full'"),
    ("Conv2d", (4, 6, 3), {"padding": "same", "stride": 2},
     "^" + re.escape("padding='same' is not supported for strided convolutions") + "$"),
    ("Conv1d", (4, 6, 3), {"padding": "same", "stride": (2,)},
     "^" + re.escape("padding='same' is not supported for strided convolutions") + "$"),
    ("Conv2d", (4, 6, 3), {"padding_mode": "mirror"},
     r"^padding_mode must be one of .*, but got padding_mode='mirror'$"),
    ("ConvTranspose2d", (4, 6, 3), {"padding_mode": "reflect"},
     "^" + re.escape('Only "zeros" padding mode is supported for ConvTranspose2d') + "$"),
    ("ConvTranspose1d", (4, 6, 3), {"padding_mode": "circular"},
     "^" + re.escape('Only "zeros" padding mode is supported for ConvTranspose1d') + "$"),
]


@pytest.mark.parametrize("name, args, kwargs, pattern", CONSTRUCTOR_ERRORS)
def test_constructor_errors_match_torch(name, args, kwargs, pattern):
    ours_cls, torch_cls = PAIRS[name]
    with pytest.raises(ValueError, match=pattern):
        torch_cls(*args, **kwargs)
    with pytest.raises(ValueError, match=pattern):
        ours_cls(*args, **kwargs)


@pytest.mark.parametrize("name", PAIRS)
@pytest.mark.parametrize("kwargs", [{"in_channels": 4.0}, {"out_channels": None}, {"groups": 1.0},
                                    {"kernel_size": 2.5}, {"kernel_size": (3, 3, 3, 3)}, {"kernel_size": 0}])
def test_constructor_rejects_bad_sizes(name, kwargs):
    full = {"in_channels": 4, "out_channels": 6, "kernel_size": 3}
    full.update(kwargs)
    with pytest.raises((TypeError, ValueError), match=next(iter(kwargs))):
        PAIRS[name][0](**full)


def test_forward_errors_are_the_functional_ones():
    # torch checks stride/padding values at forward time; so does convcore
    m = nn.Conv2d(2, 3, 3, stride=0, seed=0)
    with pytest.raises(ValueError, match="^non-positive stride is not supported$"):
        m(np.ones((1, 2, 5, 5), np.float32))
    m = nn.Conv2d(2, 3, 3, padding=5, padding_mode="reflect", seed=0)
    with pytest.raises(ValueError, match="Padding size should be less than the corresponding input dimension"):
        m(np.ones((1, 2, 5, 5), np.float32))
    with pytest.raises(ValueError, match=re.escape("Expected 3D (unbatched) or 4D (batched) input to conv2d")):
        m(np.ones((5, 5), np.float32))


def test_modules_are_exported():
    assert convcore.nn.Conv2d is nn.Conv2d
    assert set(PAIRS) <= set(convcore.nn.__all__)
