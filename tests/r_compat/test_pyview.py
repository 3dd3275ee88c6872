"""The Python view: R torch's API called from Python with numpy arrays and R-style arguments."""
import numpy as np
import pytest
import torch

from convcore import r_compat

from _r_helpers import CPP_CLASS, VALUE_ERROR_CLASS, assert_close

pytestmark = pytest.mark.usefixtures("r_session")


def test_module_with_numpy_parameters_matches_pytorch():
    rng = np.random.default_rng(1)
    m = r_compat.nn_conv_transpose2d(4, 6, (3, 2), stride=2, padding=(1, 0), groups=2)
    assert m.weight.shape == (4, 3, 3, 2) and m.weight.dtype == np.float32
    w = rng.standard_normal((4, 3, 3, 2)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    m.weight, m.bias = w, b
    assert np.array_equal(m.weight, w) and np.array_equal(m.bias, b)
    x = rng.standard_normal((2, 4, 5, 5)).astype(np.float32)
    want = torch.nn.functional.conv_transpose2d(
        *map(torch.from_numpy, (x, w, b)), stride=2, padding=(1, 0), groups=2).numpy()
    out = m(x)
    assert out.dtype == np.float32
    assert_close(out, want, 2 * 6)
    assert m(x, output_size=[10, 11]).shape == (2, 6, 10, 11)
    assert np.array_equal(m.forward(x), out)


def test_float64_module_and_functional():
    rng = np.random.default_rng(2)
    m = r_compat.nn_conv2d(3, 2, 3, padding="same", bias=False).to("float64")
    assert m.bias is None and m.weight.dtype == np.float64
    x = rng.standard_normal((1, 3, 6, 7))
    out = m(x)
    want = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(m.weight),
                                      padding="same").numpy()
    assert out.dtype == np.float64
    assert_close(out, want, 27)
    assert_close(r_compat.nnf_conv2d(x, m.weight, padding="same"), want, 27)


def test_functional_r_style_arguments():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 4, 6)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3)).astype(np.float32)
    # 2.9 is truncated to 2, as R torch's int64 conversion does
    out = r_compat.nnf_conv_transpose1d(x, w, None, 2.9, output_padding=1)
    want = torch.nn.functional.conv_transpose1d(*map(torch.from_numpy, (x, w)), stride=2,
                                                output_padding=1).numpy()
    assert_close(out, want, 4 * 3)


def test_r_errors_reach_python_with_message_and_class():
    with pytest.raises(r_compat.RError) as info:
        r_compat.nn_conv_transpose2d(4, 3, 3, padding_mode="reflect")
    assert info.value.message == "Only `zeros` padding is supported."
    assert info.value.classes == VALUE_ERROR_CLASS
    m = r_compat.nn_conv_transpose2d(4, 3, 3, stride=2, dilation=2)
    x = np.zeros((1, 4, 5, 5), np.float32)
    with pytest.raises(r_compat.RError, match="^requested an output of size 13, but valid"):
        m(x, output_size=[13, 13])
    assert m(x, output_size=[11, 11]).shape == (1, 3, 13, 13)  # dilation ignored, as in R torch
    with pytest.raises(r_compat.RError) as info:
        r_compat.nnf_conv2d(x, np.zeros((3, 4, 3, 3), np.float32), stride=0)
    assert (info.value.message, info.value.classes) == ("non-positive stride is not supported",
                                                        CPP_CLASS)
