import os
import sys

# tests/reference.py is imported as a top-level module
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import pytest  # noqa: E402

from convcore._kernels import conv_dot, conv_small  # noqa: E402


@pytest.fixture(autouse=True)
def _shortcut_paths_off(request):
    """The path tests here mean the GEMM, direct and sub-pixel paths, small shapes and batch-1
    shapes included, so the small-call path and the dot path are off for them; test_conv_small.py
    and test_conv_dot.py test those (and the dispatch to them), each with the other one off."""
    name = request.module.__name__
    old_steps = conv_small.set_max_steps(-1)
    old_pixels = conv_dot.set_max_pixels(0)
    if name.endswith("test_conv_small"):
        conv_small.set_max_steps(old_steps)
    if name.endswith("test_conv_dot"):
        conv_dot.set_max_pixels(old_pixels)
    try:
        yield
    finally:
        conv_small.set_max_steps(old_steps)
        conv_dot.set_max_pixels(old_pixels)
