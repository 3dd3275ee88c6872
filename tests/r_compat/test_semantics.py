"""R torch's semantics in the embedded R session, quirks included (listed in convcore.r_compat's
docstring). Values are compared with PyTorch (test-only dependency), which computes what libtorch
computes for R torch."""
import numpy as np
import pytest
import torch

from _r_helpers import CPP_CLASS, VALUE_ERROR_CLASS, assert_close, r_error, run_r

pytestmark = pytest.mark.usefixtures("r_session")

# R_TORCH.md's seed examples, verbatim, in their four parts
SEED_EXAMPLES = [
    """m <- nn_conv_transpose2d(16, 33, 3, stride = 2)
m <- nn_conv_transpose2d(16, 33, c(3, 5), stride = c(2, 1), padding = c(4, 2))
input <- torch_randn(20, 16, 50, 100)
output <- m(input)
""",
    """input <- torch_randn(1, 16, 12, 12)
downsample <- nn_conv2d(16, 16, 3, stride = 2, padding = 1)
upsample <- nn_conv_transpose2d(16, 16, 3, stride = 2, padding = 1)
h <- downsample(input)
h$size()
output <- upsample(h, output_size = input$size())
output$size()                                         # 1 16 12 12
""",
    """m <- nn_conv_transpose1d(32, 16, 2); input <- torch_randn(10, 32, 2); output <- m(input)
""",
    """m <- nn_conv2d(16, 33, c(3, 5), stride = c(2, 1), padding = c(4, 2), dilation = c(3, 1))
input <- torch_randn(20, 16, 50, 100); output <- m(input)
""",
]


def test_seed_examples_run_unmodified_with_documented_shapes():
    sizes = [list(run_r(code + "output$size()")) for code in SEED_EXAMPLES]
    assert sizes == [[20, 33, 93, 100], [1, 16, 12, 12], [10, 16, 3], [20, 33, 26, 100]]
    assert list(run_r(SEED_EXAMPLES[1] + "h$size()")) == [1, 16, 6, 6]
    assert list(run_r("".join(SEED_EXAMPLES) + "output$size()")) == [20, 33, 26, 100]


def test_seed_example_values_match_pytorch():
    x, w, b, out = run_r("""
        m <- nn_conv_transpose2d(16, 33, c(3, 5), stride = c(2, 1), padding = c(4, 2))
        input <- torch_randn(2, 16, 10, 12)
        list(input, m$weight, m$bias, m(input))
    """)
    want = torch.nn.functional.conv_transpose2d(
        torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), (2, 1), (4, 2)
    ).numpy()
    assert out.dtype == np.float32
    assert_close(out, want, 16 * 15)


def test_arrays_keep_shape_and_index_meaning():
    got = run_r("""
        x <- array(seq_len(120) / 7, dim = c(2, 3, 4, 5))
        t <- torch_tensor(x, dtype = torch_float64())
        list(identical(as_array(t), x), t$size(), t$shape, t$dim(), t$size(-1), x[2, 3, 4, 5], t)
    """)
    same, size, shape, ndim, last, element, tensor = got
    assert same == [True] and list(size) == [2, 3, 4, 5] and list(shape) == [2, 3, 4, 5]
    assert ndim == [4] and last == [5]
    assert tensor.dtype == np.float64 and tensor[1, 2, 3, 4] == element[0] == 120 / 7


def test_numpy_arrays_round_trip_through_r():
    from convcore.r_compat import nnf_conv2d

    x = np.arange(2 * 3 * 4 * 5, dtype=np.float64).reshape(2, 3, 4, 5) / 7
    w = np.zeros((3, 3, 1, 1))
    w[[0, 1, 2], [0, 1, 2]] = 1  # identity 1x1 conv returns the input
    assert np.array_equal(nnf_conv2d(x, w), x)


def test_r_doubles_become_float32_unless_float64_is_asked():
    got = run_r("""
        list(torch_tensor(0.1)$item(), torch_tensor(0.1, dtype = torch_float64())$item(),
             torch_tensor(c(1, 2))$dtype == torch_float32(),
             torch_randn(2, 2)$dtype == torch_float(),
             as_array(torch_tensor(c(0.1, 0.2))))
    """)
    f32, f64, is32, randn32, vec = got
    assert f32[0] == float(np.float32(0.1)) != 0.1 and f64[0] == 0.1
    assert is32 == [True] and randn32 == [True]
    assert vec == [float(np.float32(0.1)), float(np.float32(0.2))]  # 1-D: a plain R vector


def test_scalars_are_recycled_and_vectors_kept_as_given():
    got = run_r("""
        m <- nn_conv_transpose2d(2, 2, 3, stride = c(2, 1, 3), padding = 1)
        list(m$stride, m$padding, m$kernel_size, m$output_padding)
    """)
    assert [list(v) for v in got] == [[2, 1, 3], [1, 1], [3, 3], [0, 0]]
    err = r_error("""
        m <- nn_conv_transpose2d(2, 2, 3, stride = c(2, 1, 3))
        m(torch_randn(1, 2, 4, 4))
    """)
    assert err.message == (
        "expected stride to be a single integer value or a list of 2 values to match the "
        "convolution dimensions, but got stride=[2, 1, 3]"
    )
    assert err.classes == CPP_CLASS


def test_doubles_are_truncated_toward_zero():
    x, w, b, out = run_r("""
        m <- nn_conv_transpose2d(2, 3, 2.7, stride = 2.9, padding = 0.99)
        input <- torch_randn(1, 2, 4, 5)
        list(input, m$weight, m$bias, m(input))
    """)
    assert w.shape == (2, 3, 2, 2)
    want = torch.nn.functional.conv_transpose2d(
        torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), stride=2, padding=0
    ).numpy()
    assert_close(out, want, 2 * 4)


def test_construction_checks_in_r_torch_order():
    # transposed: padding_mode is checked before groups
    err = r_error('nn_conv_transpose2d(5, 5, 3, groups = 2, padding_mode = "reflect")')
    assert (err.message, err.classes) == ("Only `zeros` padding is supported.", VALUE_ERROR_CLASS)
    err = r_error("nn_conv_transpose1d(5, 7, 3, groups = 2)")
    assert err.message == "`in_channels` must be divisible by groups"
    err = r_error('nn_conv2d(4, 7, 3, groups = 2, padding_mode = "foo")')
    assert err.message == "`out_channels` must be divisible by groups"
    err = r_error('nn_conv2d(4, 4, 3, padding_mode = "Reflect")')
    assert err.message == "padding_mode must be one of [zeros, reflect, replicate, circular],"
    assert err.classes == VALUE_ERROR_CLASS


def test_groups_zero_and_negative_fail_the_r_way():
    err = r_error("nn_conv2d(4, 4, 3, groups = 0)")
    assert err.message == "missing value where TRUE/FALSE needed"
    assert err.classes == ["simpleError", "error", "condition"]
    err = r_error("nn_conv2d(4, 4, 3, groups = -2)")
    assert err.message == "Trying to create tensor with negative dimension -2: [4, -2, 3, 3]"
    assert err.classes == CPP_CLASS


@pytest.mark.parametrize("ctor, forward, message", [
    ("nn_conv_transpose2d(2, 2, 3, padding = -1)", "m(torch_randn(1, 2, 5, 5))",
     "negative padding is not supported"),
    ("nn_conv2d(2, 2, 3, stride = 0)", "m(torch_randn(1, 2, 5, 5))",
     "non-positive stride is not supported"),
    ("nn_conv_transpose2d(2, 2, 3, stride = 2, output_padding = c(1, 2))",
     "m(torch_randn(1, 2, 5, 5))",
     "output padding must be smaller than either stride or dilation, but got "
     "output_padding_height: 1 output_padding_width: 2 stride_height: 2 stride_width: 2 "
     "dilation_height: 1 dilation_width: 1"),
    ('nn_conv2d(2, 2, 3, stride = 2, padding = "same")', "m(torch_randn(1, 2, 5, 5))",
     "padding='same' is not supported for strided convolutions"),
    ('nn_conv2d(2, 2, 3, padding = "Same")', "m(torch_randn(1, 2, 5, 5))",
     "Invalid padding string: 'Same'"),
    ('nn_conv2d(2, 2, 3, padding = "same", padding_mode = "circular")',
     "m(torch_randn(1, 2, 5, 5))", "Can't convert argument:pad"),
    ('nn_conv_transpose2d(2, 2, 3, padding = "same")', "m(torch_randn(1, 2, 5, 5))",
     "Can't convert argument:padding"),
])
def test_invalid_arguments_pass_construction_and_fail_at_forward(ctor, forward, message):
    run_r(f"m <- {ctor}; NULL")
    err = r_error(f"m <- {ctor}; {forward}")
    assert (err.message, err.classes) == (message, CPP_CLASS)


@pytest.mark.parametrize("ctor, fan_in", [
    ("nn_conv2d(6, 4, c(3, 2), groups = 2)", 3 * 6),
    ("nn_conv_transpose2d(6, 4, 3, groups = 2)", 2 * 9),
    ("nn_conv_transpose1d(5, 3, 4)", 3 * 4),
])
def test_init_bounds_shapes_and_seeding(ctor, fan_in):
    w1, b1, w2, w3 = run_r(f"""
        torch_manual_seed(7); m <- {ctor}; w1 <- m$weight; b1 <- m$bias
        torch_manual_seed(7); w2 <- {ctor}$weight
        w3 <- {ctor}$weight
        list(w1, b1, w2, w3)
    """)
    bound = 1 / np.sqrt(fan_in)
    assert w1.dtype == b1.dtype == np.float32
    assert np.abs(w1).max() <= bound and np.abs(b1).max() <= bound
    assert np.abs(w1).max() > 0.5 * bound  # drawn over the whole range, not a narrower one
    assert np.array_equal(w1, w2) and not np.array_equal(w1, w3)


def test_no_bias_and_parameters():
    got = run_r("""
        m <- nn_conv_transpose2d(4, 6, 2, bias = FALSE)
        list(is.null(m$bias), names(m$parameters), m$weight$shape,
             nn_conv2d(4, 6, 2)$bias$shape)
    """)
    assert got == [[True], ["weight"], [4, 6, 2, 2], [6]]


def test_parameters_need_with_no_grad_to_be_overwritten():
    err = r_error("m <- nn_conv2d(2, 2, 1); m$weight$copy_(torch_randn(2, 2, 1, 1))")
    assert err.message == ("a leaf Variable that requires grad is being used in an in-place "
                           "operation.")
    got = run_r("""
        m <- nn_conv2d(2, 2, 1, bias = FALSE)
        w <- array(c(1, 0, 0, 1), dim = c(2, 2, 1, 1))
        with_no_grad(m$weight$copy_(torch_tensor(w)))
        x <- torch_randn(1, 2, 3, 3)
        list(as_array(x), as_array(m(x)))
    """)
    assert np.array_equal(got[0], got[1])


def test_module_call_forms():
    got = run_r("""
        args <- list(in_channels = 3, out_channels = 2, kernel_size = c(2, 3), stride = 2)
        m1 <- do.call(nn_conv_transpose2d, args)
        m2 <- nn_conv_transpose2d(3, 2, c(2, 3), 2)
        with_no_grad(m2$weight$copy_(m1$weight))
        with_no_grad(m2$bias$copy_(m1$bias))
        x <- torch_randn(2, 3, 4, 4)
        list(as_array(m1(x)), as_array(m1$forward(x)), as_array(m2(x)))
    """)
    assert got[0].shape == (2, 2, 8, 9)
    assert np.array_equal(got[0], got[1]) and np.array_equal(got[0], got[2])


def test_to_float64_computes_in_float64():
    x, w, b, out = run_r("""
        m <- nn_conv2d(3, 4, 3, padding = 1)
        m$to(dtype = torch_float64())
        x <- torch_randn(2, 3, 5, 5, dtype = torch_float64())
        list(x, m$weight, m$bias, m(x))
    """)
    assert w.dtype == b.dtype == out.dtype == np.float64
    want = torch.nn.functional.conv2d(*map(torch.from_numpy, (x, w, b)), padding=1).numpy()
    assert_close(out, want, 27)


def _transposed_with_output_size(ctor, in_shape, output_size):
    return run_r(f"""
        m <- {ctor}
        x <- torch_randn({", ".join(map(str, in_shape))})
        list(x, m$weight, m$bias, m(x, output_size = c({", ".join(map(str, output_size))})))
    """)


@pytest.mark.parametrize("output_size", [(9, 9), (10, 9), (1, 3, 10, 10), (2, 3, 9, 10)])
def test_output_size_equals_pytorch_for_batched_input_without_dilation(output_size):
    x, w, b, out = _transposed_with_output_size(
        "nn_conv_transpose2d(4, 3, 3, stride = 2, padding = 1)", (1, 4, 5, 5), output_size)
    m = torch.nn.ConvTranspose2d(4, 3, 3, stride=2, padding=1)
    m.weight.data, m.bias.data = torch.from_numpy(w), torch.from_numpy(b)
    want = m(torch.from_numpy(x), output_size=list(output_size)).detach().numpy()
    assert_close(out, want, 4 * 9)


def test_output_size_ignores_dilation():
    # R's window is [11, 12]; PyTorch's [13, 14]. 11 is accepted and gives 13.
    x, w, b, out = _transposed_with_output_size(
        "nn_conv_transpose2d(2, 2, 3, stride = 2, dilation = 2)", (1, 2, 5, 5), (11, 11))
    assert out.shape == (1, 2, 13, 13)
    err = r_error("""
        m <- nn_conv_transpose2d(2, 2, 3, stride = 2, dilation = 2)
        m(torch_randn(1, 2, 5, 5), output_size = c(14, 12))
    """)
    assert err.message == ("requested an output of size 14, but valid\n"
                           "\u2022 requested an output of size 12, but valid")
    assert err.classes == VALUE_ERROR_CLASS


def test_output_size_assumes_a_batch_dimension():
    ctor = "nn_conv_transpose2d(4, 3, c(3, 2), stride = c(2, 3), padding = c(1, 0))"
    err = r_error(f"m <- {ctor}; m(torch_randn(4, 5, 6), output_size = c(10, 18))")
    assert err.message == "output_size must have 1 or 3 elements (got 2)"
    # 3 entries: only the last is kept, checked against W with H's stride/padding/kernel (min 11)
    assert _transposed_with_output_size(ctor, (4, 5, 6), (3, 99, 11))[3].shape == (3, 9, 17)
    # output_padding 1 derived from W is broadcast by libtorch to H as well
    assert _transposed_with_output_size(ctor, (4, 5, 6), (12,))[3].shape == (3, 10, 18)
    err = r_error("""
        m <- nn_conv_transpose1d(4, 3, 3, stride = 2)
        m(torch_randn(4, 5), output_size = c(3, 11))
    """)
    assert err.message.startswith("expected output_padding to be a single integer value or a list "
                                  "of 1 values") and err.classes == CPP_CLASS


def test_fractional_output_size_truncates_output_padding():
    x, w, b, out = _transposed_with_output_size(
        "nn_conv_transpose2d(4, 3, 3, stride = 2, padding = 1)", (1, 4, 5, 5), (9.5, 10))
    assert out.shape == (1, 3, 9, 10)
    err = r_error("""
        m <- nn_conv_transpose2d(4, 3, 3, stride = 2, padding = 1)
        m(torch_randn(1, 4, 5, 5), output_size = c(8.5, 10))
    """)
    assert err.message == ("requested an output of size 8.5, but valid\n"
                           "\u2022 requested an output of size 10, but valid")


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_padding_modes_match_pytorch(mode):
    x, w, b, out = run_r(f"""
        m <- nn_conv2d(3, 2, c(3, 2), padding = c(2, 1), dilation = c(1, 2),
                       padding_mode = "{mode}")
        x <- torch_randn(2, 3, 5, 6)
        list(x, m$weight, m$bias, m(x))
    """)
    m = torch.nn.Conv2d(3, 2, (3, 2), padding=(2, 1), dilation=(1, 2), padding_mode=mode)
    m.weight.data, m.bias.data = torch.from_numpy(w), torch.from_numpy(b)
    assert_close(out, m(torch.from_numpy(x)).detach().numpy(), 3 * 6)


def test_reflect_padding_too_big_in_height_names_argument_6():
    err = r_error("""
        m <- nn_conv2d(3, 2, 3, padding = c(4, 1), padding_mode = "reflect")
        m(torch_randn(1, 3, 4, 6))
    """)
    assert err.message == (
        "Argument #6: Padding size should be less than the corresponding input dimension, but "
        "got: padding (4, 4) at dimension 2 of input [1, 3, 4, 6]")


def test_light_tensor_methods():
    got = run_r("""
        t <- torch_randn(2, 3)
        d <- t$detach()
        list(t$numel(), d$requires_grad, identical(as_array(t$cpu()), as_array(t)),
             t$to(dtype = torch_float64())$dtype == torch_double(), dim(t))
    """)
    assert got == [[6], [False], [True], [True], [2, 3]]
    err = r_error("torch_randn(2, 3)$copy_(torch_randn(4))")
    assert err.message == ("The size of tensor a (3) must match the size of tensor b (4) at "
                           "non-singleton dimension 1")


def test_bridge_conversion_keeps_index_meaning_both_ways():
    from convcore.r_compat import _bridge

    x = np.random.default_rng(4).standard_normal((2, 3, 4, 5))
    r_x = _bridge.r_array(x)
    pick = _bridge.rinterface().evalr("function(a) c(a[2, 3, 4, 5], a[1, 2, 1, 3], dim(a))")
    assert list(pick(r_x)) == [x[1, 2, 3, 4], x[0, 1, 0, 2], 2, 3, 4, 5]
    back = _bridge.from_r(r_x)
    assert back.flags.c_contiguous and np.array_equal(back, x)


def test_starting_r_leaves_child_processes_environment_alone():
    # rpy2 puts R's library dirs in LD_LIBRARY_PATH; a child Python could then load another
    # libpython. r_compat restores the variable after starting R.
    import os
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", "import convcore.api"], capture_output=True,
                          text=True, timeout=120, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert proc.returncode == 0, proc.stderr
    assert "/usr/lib/R" not in os.environ.get("LD_LIBRARY_PATH", "")
