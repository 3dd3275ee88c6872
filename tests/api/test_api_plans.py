"""The plan cache of repeated numpy calls (bindings/_conv.py): a repeated call gives the same
bits as its first one, and no argument torch rejects gets through a plan of an accepted one."""
import numpy as np
import pytest

import convcore
from convcore.api import _conv
from apiutil import assert_matches_torch

CALLS = [
    ("conv1d", (3, 4, 9), (6, 4, 3), dict(stride=2, padding=1)),
    ("conv1d", (4, 9), (6, 4, 3), dict(padding="same")),  # unbatched
    ("conv2d", (2, 4, 7, 6), (6, 2, 3, 2), dict(groups=2, dilation=(2, 1), padding=(1, 0))),
    ("conv2d", (2, 0, 5, 5), (6, 0, 3, 3), {}),  # no input channels: an empty result
    ("conv_transpose1d", (10, 32, 2), (32, 16, 2), {}),
    ("conv_transpose2d", (4, 7, 7), (4, 3, 3, 3), dict(stride=2, padding=1, output_padding=1)),
    ("conv_transpose2d", (0, 4, 3, 3), (4, 2, 2, 2), dict(stride=2)),  # empty batch
]


@pytest.fixture(autouse=True)
def fresh_plans():
    _conv._PLANS.clear()
    yield
    _conv._PLANS.clear()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("op, x_shape, w_shape, kwargs", CALLS)
def test_repeated_calls_give_the_first_calls_bits(op, x_shape, w_shape, kwargs, dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[1] * kwargs.get("groups", 1) if op.startswith("conv_t") else w_shape[0])
    f = getattr(convcore, op)
    for bias in (None, b.astype(dtype)):
        first = f(x, w, bias, **kwargs)
        assert len(_conv._PLANS) >= 1
        again = f(x, w, bias, **kwargs)
        assert again.shape == first.shape and again.dtype == first.dtype
        np.testing.assert_array_equal(again, first)
        # another array of the same shape goes through the plan to its own result
        x2 = (x * 2).astype(dtype)
        via_plan = f(x2, w, bias, **kwargs)
        _conv._PLANS.clear()
        np.testing.assert_array_equal(via_plan, f(x2, w, bias, **kwargs))
        assert_matches_torch(op, x2, w, bias, **kwargs)


@pytest.mark.parametrize("bad, error", [
    (dict(stride=True), TypeError),  # True == 1 and hashes alike: it must not hit stride=1's plan
    (dict(stride=1.0), TypeError),
    (dict(stride=(True,)), TypeError),
    (dict(groups=True), TypeError),
    (dict(stride=np.int64(1)), None),  # numpy integers are accepted, through the full checks
])
def test_rejected_arguments_never_reuse_a_plan(bad, error):
    x = np.ones((2, 4, 5), np.float32)
    w = np.ones((3, 4, 2), np.float32)
    want = convcore.conv1d(x, w, stride=1, groups=1)
    if error is None:
        np.testing.assert_array_equal(convcore.conv1d(x, w, **bad), want)
    else:
        with pytest.raises(error):
            convcore.conv1d(x, w, **bad)


def test_other_dtypes_layouts_and_biases_are_checked_again():
    x = np.ones((2, 4, 5), np.float32)
    w = np.ones((3, 4, 2), np.float32)
    convcore.conv1d(x, w)
    with pytest.raises(TypeError, match="dtype"):
        convcore.conv1d(x, w.astype(np.float64))
    with pytest.raises(ValueError, match="bias"):
        convcore.conv1d(x, w, np.ones(4, np.float32))
    # a non-contiguous view takes the full path (and its contiguous copy)
    wide = np.ones((2, 4, 10), np.float32)
    np.testing.assert_array_equal(convcore.conv1d(wide[:, :, ::2], w), convcore.conv1d(x, w))


def test_padding_modes_other_than_zeros_are_not_planned():
    x = np.arange(10, dtype=np.float64).reshape(1, 1, 10)
    w = np.ones((1, 1, 3))
    first = convcore.conv1d(x, w, padding=1, padding_mode="reflect")
    assert not _conv._PLANS
    x[0, 0, 0] = 100.0  # reflect padding reads the values: the result follows them
    np.testing.assert_array_equal(convcore.conv1d(x, w, padding=1, padding_mode="reflect")[0, 0, :2],
                                  first[0, 0, :2] + 100.0)


def test_the_cache_stays_bounded():
    w = np.ones((1, 1, 1), np.float32)
    for length in range(1, _conv._PLANS_MAX + 40):
        convcore.conv1d(np.ones((1, 1, length), np.float32), w)
        assert len(_conv._PLANS) <= _conv._PLANS_MAX


def test_plan_keys_name_the_array_type():
    """numpy and cupy calls of the same shapes must never share a plan (their kernels and
    outputs differ): the key names the operands' array type."""
    x, w = np.ones((1, 2, 5, 5), np.float32), np.ones((3, 2, 3, 3), np.float32)
    key = _conv._plan_key("conv2d", x, w, None, ((1, 1), (0, 0), (1, 1), 1))
    assert key[:2] == ("conv2d", np.ndarray)
    assert _conv._plan_key("conv2d", x, w.tolist(), None, (1, 0, 1, 1)) is None
