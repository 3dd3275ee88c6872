"""The embedded R session for the r_compat tests.

The modules that use R mark themselves with ``pytestmark = pytest.mark.usefixtures("r_session")``.
They need R and rpy2 and run in CI; CONVCORE_SKIP_R_TESTS=1 skips them where R is absent on purpose
(anywhere else a missing R is an error, not a silent skip). test_ops.py needs no R.
"""
import os

import pytest


@pytest.fixture(scope="session")
def r_session():
    if os.environ.get("CONVCORE_SKIP_R_TESTS") == "1":
        pytest.skip("CONVCORE_SKIP_R_TESTS=1: R and rpy2 not expected here")
    from convcore import r_compat

    return r_compat.install()

