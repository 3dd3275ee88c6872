"""Array handling: memory layouts, read-only and non-array operands, and the dtype rule."""
import numpy as np
import pytest

from apiutil import NDIM, OPS, TRANSPOSED, assert_matches_torch, convcore_call

FLOATS = (np.float32, np.float64)


def operands(op, dtype=np.float64, seed=0, batch=2):
    """x, w, b of a valid call with groups=2 and stride 2 (see KWARGS)."""
    rng = np.random.default_rng(seed)
    nd = NDIM[op]
    x = rng.standard_normal((batch, 4) + (9,) * nd).astype(dtype)
    w = rng.standard_normal(((4, 3) if TRANSPOSED[op] else (6, 2)) + (3,) * nd).astype(dtype)
    b = rng.standard_normal(6).astype(dtype)
    return x, w, b


KWARGS = {"groups": 2, "stride": 2, "padding": 1}


def _strided_copy(a, how):
    """``a``'s values in a non-C-contiguous array of the same shape."""
    if how == "fortran":
        out = np.asfortranarray(a)
    elif how == "sliced":
        big = np.zeros(tuple(2 * s for s in a.shape), dtype=a.dtype)
        out = big[tuple(slice(None, None, 2) for _ in a.shape)]
        out[...] = a
    elif how == "reversed":
        out = np.ascontiguousarray(a[..., ::-1])[..., ::-1]
    else:  # "transposed": stored with the two first axes swapped
        out = np.ascontiguousarray(np.swapaxes(a, 0, 1)).swapaxes(0, 1)
    assert not out.flags.c_contiguous
    np.testing.assert_array_equal(out, a)
    return out


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("how", ["fortran", "sliced", "reversed", "transposed"])
@pytest.mark.parametrize("which", ["input", "weight", "bias", "all"])
def test_non_contiguous_operands_give_the_contiguous_result(op, how, which):
    x, w, b = operands(op)
    expected = convcore_call(op, x, w, b, **KWARGS)
    if which in ("input", "all"):
        x = _strided_copy(x, how)
    if which in ("weight", "all"):
        w = _strided_copy(w, how)
    if which in ("bias", "all"):
        b = _strided_copy(b, how if how in ("sliced", "reversed") else "sliced")  # 1-D: no other layouts
    np.testing.assert_array_equal(convcore_call(op, x, w, b, **KWARGS), expected)
    assert_matches_torch(op, x, w, b, **KWARGS)


@pytest.mark.parametrize("op", OPS)
def test_views_of_larger_arrays(op):
    # a crop and a channel slice of a bigger batch: offsets into the buffer, not just strides
    x, w, b = operands(op, batch=4)
    nd = NDIM[op]
    crop = (slice(1, 3), slice(None)) + (slice(1, 8),) * nd
    assert_matches_torch(op, x[crop], w, b, **KWARGS)
    assert_matches_torch(op, x[crop], w[:, :, ::-1][:, :, ::-1], b[::-1][::-1], **KWARGS)
    wide = np.concatenate([x, x], axis=1)[:, 4:]
    assert_matches_torch(op, wide, w, b, **KWARGS)


@pytest.mark.parametrize("op", OPS)
def test_read_only_operands_are_accepted_and_untouched(op):
    x, w, b = operands(op)
    copies = [a.copy() for a in (x, w, b)]
    for a in (x, w, b):
        a.setflags(write=False)
    out = convcore_call(op, x, w, b, **KWARGS)
    assert out.flags.writeable
    for a, c in zip((x, w, b), copies):
        np.testing.assert_array_equal(a, c)
    np.testing.assert_array_equal(out, convcore_call(op, *copies, **KWARGS))


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("padding_mode", ["zeros", "reflect"])
def test_inputs_are_never_modified(op, padding_mode):
    x, w, b = operands(op)
    copies = [a.copy() for a in (x, w, b)]
    kwargs = dict(KWARGS, padding_mode=padding_mode) if not TRANSPOSED[op] else KWARGS
    convcore_call(op, x, w, b, **kwargs)
    for a, c in zip((x, w, b), copies):
        np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("op", OPS)
def test_nested_lists_are_arrays(op):
    x, w, b = operands(op)
    expected = convcore_call(op, x, w, b, **KWARGS)
    got = convcore_call(op, x.tolist(), w.tolist(), b.tolist(), **KWARGS)
    assert isinstance(got, np.ndarray) and got.dtype == np.float64
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(convcore_call(op, x.tolist(), w, b, **KWARGS), expected)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("batch", [None, 0, 2])
def test_output_dtype_is_the_input_dtype(op, dtype, batch):
    x, w, b = operands(op, dtype=dtype, batch=1 if batch is None else batch)
    if batch is None:
        x = x[0]
    for bias in (b, None):
        out = convcore_call(op, x, w, bias, **KWARGS)
        assert type(out) is np.ndarray and out.dtype == dtype
        assert out.ndim == x.ndim and (batch is None or out.shape[0] == batch)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("which", ["input", "weight", "bias"])
@pytest.mark.parametrize("dtype", FLOATS)
def test_mixed_float_dtypes_are_rejected(op, which, dtype):
    other = np.float64 if dtype == np.float32 else np.float32
    x, w, b = operands(op, dtype=dtype)
    ops = {"input": x, "weight": w, "bias": b}
    ops[which] = ops[which].astype(other)
    with pytest.raises(TypeError, match="same dtype"):
        convcore_call(op, ops["input"], ops["weight"], ops["bias"], **KWARGS)


BAD_DTYPES = [np.int64, np.int32, np.uint8, np.bool_, np.complex64, np.complex128, np.float16, np.longdouble,
              object, "U3"]


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("which", ["input", "weight", "bias"])
@pytest.mark.parametrize("dtype", BAD_DTYPES, ids=lambda d: np.dtype(d).name)
def test_other_dtypes_are_rejected(op, which, dtype):
    x, w, b = operands(op)
    ops = {"input": x, "weight": w, "bias": b}
    ops[which] = ops[which].astype(dtype)
    with pytest.raises(TypeError, match=f"'{which}'.*float32 or float64"):
        convcore_call(op, ops["input"], ops["weight"], ops["bias"], **KWARGS)


@pytest.mark.parametrize("op", OPS)
def test_integer_lists_are_rejected_not_cast(op):
    x, w, b = operands(op)
    with pytest.raises(TypeError, match="'input'"):
        convcore_call(op, np.ones(x.shape, dtype=int).tolist(), w, b, **KWARGS)


@pytest.mark.parametrize("op", OPS)
def test_zero_sized_output_is_an_empty_array(op):
    x, w, b = operands(op, batch=0)
    out = convcore_call(op, x, w, b, **KWARGS)
    assert out.shape[0] == 0 and out.size == 0 and out.dtype == x.dtype


@pytest.mark.parametrize("op", OPS)
def test_output_is_a_new_array(op):
    x, w, b = operands(op)
    out = convcore_call(op, x, w, b, **KWARGS)
    assert not any(np.shares_memory(out, a) for a in (x, w, b))
    # the 1x1 / stride 1 case, where the input plane is used as the GEMM operand directly
    w1 = w[..., :1] if TRANSPOSED[op] else w[..., 1:2]
    out = convcore_call(op, x, np.ascontiguousarray(w1), groups=2)
    assert not np.shares_memory(out, x)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("which", ["input", "weight"])
def test_non_native_byte_order_is_never_silently_wrong(op, which):
    x, w, b = operands(op)
    expected = convcore_call(op, x, w, b, **KWARGS)
    ops = {"input": x, "weight": w}
    ops[which] = ops[which].astype(ops[which].dtype.newbyteorder())
    try:
        got = convcore_call(op, ops["input"], ops["weight"], b, **KWARGS)
    except TypeError as exc:
        assert which in str(exc)
    else:
        np.testing.assert_array_equal(got, expected)


# strides of 1 as C ints (libtorch's transposed backend checks them so), impossible as int64
@pytest.mark.parametrize("op, stride", [("conv_transpose2d", 2**40 + 1), ("conv_transpose1d", 2**62 + 1)])
def test_impossible_output_sizes_raise(op, stride):
    # never handed to torch: it would try to allocate. The message must say what is too large,
    # not numpy's "array is too big" / "Maximum allowed dimension exceeded".
    nd = NDIM[op]
    with pytest.raises((ValueError, MemoryError), match="output"):
        convcore_call(op, np.ones((1, 1) + (3,) * nd), np.ones((1, 1) + (1,) * nd), stride=stride)
