import os
import sys

# tests/reference.py is imported as a top-level module
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import pytest  # noqa: E402

from convcore._kernels import conv_small  # noqa: E402


@pytest.fixture(autouse=True)
def _small_path_off(request):
    """The path tests here mean the GEMM, direct and sub-pixel paths, small shapes included, so the
    small-call path is off for them; test_conv_small.py tests it (and the dispatch to it)."""
    if request.module.__name__.endswith("test_conv_small"):
        yield
        return
    old = conv_small.set_max_steps(-1)
    try:
        yield
    finally:
        conv_small.set_max_steps(old)
