"""Helpers of the r_compat tests: R snippets run in the embedded R session, tolerances."""
from pathlib import Path

import numpy as np
import pytest

FIXTURES = Path(__file__).resolve().parent.parent / "data" / "rtorch"


def run_r(code):
    """Evaluate R code (a function body, run in its own frame under the global environment) and
    return its value converted to Python; tensors come back as numpy arrays. R errors are raised
    as r_compat.RError."""
    from convcore.r_compat import _bridge

    fun = _bridge.rinterface().evalr("function() {\n" + code + "\n}")
    return _bridge.call(fun)


def r_error(code):
    """The RError raised by R code (fails the test when the code succeeds)."""
    from convcore.r_compat import RError

    with pytest.raises(RError) as info:
        run_r(code)
    return info.value


CPP_CLASS = ["Rcpp::exception", "C++Error", "error", "condition"]
VALUE_ERROR_CLASS = ["value_error", "rlang_error", "error", "condition"]


def assert_close(got, want, reduction):
    """float32/float64 comparison scaled with sqrt(reduction length), relative to magnitude."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape
    rtol = {np.float32: 4e-6, np.float64: 1e-13}[got.dtype.type] * np.sqrt(reduction)
    err = np.max(np.abs(got.astype(np.float64) - want) / (1 + np.abs(want)), initial=0.0)
    assert err <= rtol, f"max rel err {err} > {rtol}"
