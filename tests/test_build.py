"""The build kept OpenMP: pip hides the compiler's warning when the probe fails and the kernels
silently become serial. Set CONVCORE_ALLOW_SERIAL=1 where a serial build is intended."""
import os

import pytest

from convcore._kernels import _config


def test_kernels_were_built_with_openmp():
    if os.environ.get("CONVCORE_ALLOW_SERIAL") == "1":
        pytest.skip("CONVCORE_ALLOW_SERIAL=1: a serial build is intended")
    assert _config.openmp_enabled(), (
        "convcore's kernels were built without OpenMP, so they run on one thread. Install a compiler with "
        "OpenMP support (gcc: libgomp; clang: libomp) and rebuild (pip install -e . --no-build-isolation, with "
        "CONVCORE_REQUIRE_OPENMP=1 to make the build fail instead), or set CONVCORE_ALLOW_SERIAL=1 to skip this test."
    )
