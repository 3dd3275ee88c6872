"""r_compat's libtorch layer (_ops, no R involved) against PyTorch, whose libtorch gives R torch
its padding and its error texts: at::pad's values and messages, the int64 conversion of R
numbers, and the errors of a weight whose rank does not fit the op."""
import numpy as np
import pytest
import torch

from convcore.r_compat import _ops

PAD_CASES = [
    ((1, 3, 4, 6), [1, 2, 3, 1], "reflect"),
    ((3, 4, 6), [1, 2, 3, 1], "reflect"),
    ((2, 3, 4, 6), [-1, 2, -2, 1], "reflect"),
    ((1, 3, 4, 6), [1, 2, 3, 1], "replicate"),
    ((1, 3, 4, 6), [-1, 2, -2, 1], "replicate"),
    ((1, 3, 4, 6), [4, 6, 1, 4], "circular"),
    ((3, 4, 6), [-1, 2, -2, 1], "circular"),
    ((1, 3, 4, 6), [-1, 2, -2, 1], "constant"),
    ((1, 3, 4, 6), [1, 1, 1, 1, 1, 1], "reflect"),
    ((2, 3, 7), [2, 3], "reflect"),
    ((2, 3, 7), [2, 3], "circular"),
]

PAD_ERRORS = [
    ((1, 3, 4, 6), [1, 1, 4, 4], "reflect"),
    ((1, 3, 4, 6), [6, 1, 1, 1], "reflect"),
    ((3, 4, 6), [1, 1, 4, 4], "reflect"),
    ((1, 3, 4, 6), [7, 1, 1, 1], "circular"),
    ((1, 3, 4, 6), [1, 1, -3, -3], "replicate"),
    ((1, 3, 4, 6), [-6, -1, -3, -3], "replicate"),
    ((1, 3, 4, 6), [1, 1, 1, 1, 1], "reflect"),
    ((1, 3, 4, 6), [1] * 10, "circular"),
    ((1, 3, 0, 6), [1, 1, 1, 1], "reflect"),
    ((1, 3, 4, 6), [1, 1, 1, 1], "foo"),
    ((1, 3, 4, 6), [-5, -2, -2, 1], "constant"),
]


def _torch_error(fn):
    with pytest.raises(Exception) as info:
        fn()
    return str(info.value).split("\nException raised from")[0]


def _r_numbers(values):
    return [float(v) for v in values]  # R doubles


@pytest.mark.parametrize("shape, pad, mode", PAD_CASES)
def test_pad_values_match_libtorch(shape, pad, mode):
    x = np.random.default_rng(0).standard_normal(shape)
    got = _ops.pad(x, _r_numbers(pad), _ops.Chars([mode]), None)
    want = torch._C._nn.pad(torch.from_numpy(x), pad, mode).numpy()
    assert got.shape == want.shape and np.array_equal(got, want)


@pytest.mark.parametrize("shape, pad, mode", PAD_ERRORS)
def test_pad_errors_match_libtorch(shape, pad, mode):
    x = np.zeros(shape)
    with pytest.raises(_ops.LibtorchError) as info:
        _ops.pad(x, _r_numbers(pad), _ops.Chars([mode]), None)
    assert str(info.value) == _torch_error(lambda: torch._C._nn.pad(torch.from_numpy(x), pad, mode))


def test_r_numbers_are_truncated_toward_zero():
    assert _ops.int_array([2.7, -2.7, 0.5], "stride") == [2, -2, 0]
    assert _ops.int_array([[1.0], [2.9]], "output_padding") == [1, 2]  # an R list
    assert _ops.int_array([], "output_padding") == []
    with pytest.raises(_ops.LibtorchError, match="^Can't convert argument:padding$"):
        _ops.int_array(_ops.Chars(["same"]), "padding")
    with pytest.raises(_ops.LibtorchError, match="^Can't convert argument:stride$"):
        _ops.int_array([float("nan")], "stride")


@pytest.mark.parametrize("op, x_shape, w_shape, kwargs", [
    ("conv2d", (1, 4, 5, 5), (3, 4, 3, 3, 3), {}),
    ("conv2d", (1, 4, 5, 5), (3, 4, 3, 3, 3), {"stride": [2], "padding": [1]}),
    ("conv2d", (4, 5, 5), (3, 4, 3), {"stride": [2], "padding": [1], "dilation": [1]}),
    ("conv2d", (1, 4, 5, 5), (3, 4), {}),
    ("conv_transpose1d", (1, 4, 5), (4, 3, 3, 3), {}),
    ("conv_transpose2d", (1, 4, 5, 5), (4, 3, 3), {"padding": [-1]}),
    ("conv_transpose2d", (1, 4, 5, 5), (4, 3, 3), {"stride": [0]}),
])
def test_weight_rank_errors_match_libtorch(op, x_shape, w_shape, kwargs):
    x, w = np.zeros(x_shape, np.float32), np.ones(w_shape, np.float32)
    args = {"stride": [1], "padding": [0], "dilation": [1], "groups": [1]}
    args.update(kwargs)
    if op == "conv2d":
        call = lambda: _ops.conv2d(x, w, None, *(_r_numbers(args[k]) for k in
                                                 ("stride", "padding", "dilation", "groups")))
    else:
        call = lambda: getattr(_ops, op)(x, w, None, *(_r_numbers(args.get(k, [0])) for k in
                                          ("stride", "padding", "output_padding", "groups",
                                           "dilation")))
    with pytest.raises(_ops.LibtorchError) as info:
        call()
    t_args = {k: v for k, v in args.items() if k != "groups"}
    if op != "conv2d":
        t_args.setdefault("output_padding", [0])  # R's default 0 is one value, not torch's (0, 0)
    want = _torch_error(lambda: getattr(torch.nn.functional, op)(
        torch.from_numpy(x), torch.from_numpy(w), None, **t_args))
    assert str(info.value) == want


def test_copy_broadcasts_and_reports_libtorch_mismatch():
    dst = np.zeros((2, 3))
    assert np.array_equal(_ops.copy(dst, np.array([1.0, 2.0, 3.0]), _ops.Chars(["float64"])),
                          np.tile([1.0, 2.0, 3.0], (2, 1)))
    with pytest.raises(_ops.LibtorchError) as info:
        _ops.copy(dst, np.zeros(4), _ops.Chars(["float64"]))
    assert str(info.value) == _torch_error(lambda: torch.zeros(2, 3).copy_(torch.zeros(4)))


def test_init_parameters_bound_and_order():
    _ops.manual_seed([3.0])
    p = _ops.init_parameters([4.0, 2.0, 3.0, 3.0], [4.0])
    _ops.manual_seed([3.0])
    w_only = _ops.init_parameters([4.0, 2.0, 3.0, 3.0], None)
    bound = 1 / np.sqrt(18)
    assert p["weight"].shape == (4, 2, 3, 3) and p["bias"].shape == (4,)
    assert np.abs(p["weight"]).max() <= bound and np.abs(p["bias"]).max() <= bound
    assert np.array_equal(p["weight"], w_only["weight"])  # the weight is drawn first
    with pytest.raises(_ops.LibtorchError, match=r"negative dimension -2: \[4, -2, 3, 3\]"):
        _ops.init_parameters([4.0, -2.0, 3.0, 3.0], [4.0])
    with pytest.raises(_ops.LibtorchError) as info:  # fan_in 0: bound inf
        _ops.init_parameters([4.0, 0.0, 3.0, 3.0], [4.0])
    with pytest.raises(RuntimeError) as want:
        torch.empty(4, 0, 3, 3).uniform_(-np.inf, np.inf)
    assert str(info.value) == str(want.value).split("\n")[0]


@pytest.mark.parametrize(
    "op, x_shape, w_shape, stride, padding, output_padding, groups, dilation", [
    ("conv2d", (1, 4, 5, 5), (3, 4, 3, 3), [1], [0, 0, 0], None, [1], [1, 1, 1]),
    ("conv2d", (1, 4, 5, 5), (3, 4, 3, 3), [1], [0], None, [0], [1, 1, 1]),
    ("conv2d", (1, 4, 5, 5), (3, 4, 3, 3), [0], [-1], None, [1], [1]),
    ("conv2d", (1, 4, 5, 5), (3, 2, 3, 3), [1], [0], None, [2], [1]),
    ("conv2d", (1, 4, 2, 2), (4, 4, 3, 3), [1], [0], None, [1], [1]),
    ("conv_transpose2d", (1, 4, 5, 5), (4, 3, 3, 3), [1], [0], [0, 0, 0], [1], [1, 1, 1]),
    ("conv_transpose2d", (1, 4, 5, 5), (4, 3, 3, 3), [1], [0, 0, 0], [0], [1], [1, 1, 1]),
    ("conv_transpose2d", (1, 4, 5, 5), (4, 3, 3, 3), [1], [0], [0], [0], [1, 2, 3]),
    ("conv_transpose2d", (1, 4, 5, 5), (4, 3, 3, 3), [1], [0], [0], [1], [0]),
    ("conv_transpose2d", (1, 4, 1, 1), (4, 3, 3, 3), [1], [2], [0], [1], [1]),
    ("conv_transpose1d", (1, 4, 5), (4, 3, 3), [1], [0], [0], [1], [0]),
    ("conv_transpose1d", (4, 5), (4, 3, 3), [2], [0], [1, 1], [1], [1]),
    ])
def test_several_bad_arguments_fail_in_libtorch_order(op, x_shape, w_shape, stride, padding,
                                                      output_padding, groups, dilation):
    x, w = np.zeros(x_shape, np.float32), np.ones(w_shape, np.float32)
    tx, tw = torch.from_numpy(x), torch.from_numpy(w)
    with pytest.raises(_ops.LibtorchError) as info:
        if op == "conv2d":
            _ops.conv2d(x, w, None, *map(_r_numbers, (stride, padding, dilation, groups)))
        else:
            getattr(_ops, op)(x, w, None, *map(_r_numbers, (stride, padding, output_padding,
                                                            groups, dilation)))
    if op == "conv2d":
        want = _torch_error(lambda: torch.nn.functional.conv2d(tx, tw, None, stride, padding,
                                                               dilation, groups[0]))
    else:
        want = _torch_error(lambda: getattr(torch.nn.functional, op)(
            tx, tw, None, stride, padding, output_padding, groups[0], dilation))
    assert str(info.value) == want
