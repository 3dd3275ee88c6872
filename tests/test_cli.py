"""``python -m convcore info|demo`` in a fresh interpreter."""
import subprocess
import sys

import pytest


def _run(*args):
    return subprocess.run([sys.executable, "-m", "convcore", *args], capture_output=True, text=True, timeout=120)


def test_info():
    proc = _run("info")
    assert proc.returncode == 0, proc.stderr
    assert "convcore" in proc.stdout and "openmp" in proc.stdout


def test_demo_prints_the_seed_shapes():
    proc = _run("demo")
    assert proc.returncode == 0, proc.stderr
    for shape in ["(20, 33, 101, 201)", "(20, 33, 93, 100)", "(10, 16, 3)", "(20, 33, 26, 100)",
                  "(16, 64, 63, 63)", "-> (1, 16, 12, 12)"]:
        assert shape in proc.stdout, f"{shape} missing from:\n{proc.stdout}"


@pytest.mark.parametrize("args", [[], ["bogus"]])
def test_bad_command_fails(args):
    proc = _run(*args)
    assert proc.returncode != 0
    assert "usage" in proc.stderr
