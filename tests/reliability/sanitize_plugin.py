"""pytest plugin of tests/sanitize.sh (``-p sanitize_plugin``): the run really uses the sanitized
build, and it loads every kernel extension module (a kernel file that no test reaches is an error).
"""
import glob
import importlib.machinery
import os
import sys

import pytest


def _kernel_modules(tree):
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    names = set()
    for path in glob.glob(os.path.join(tree, "convcore", "_kernels", "*")):
        base = os.path.basename(path)
        # the first (longest) suffix that matches: "conv.cpython-311-x86_64-linux-gnu.so" is module "conv"
        suffix = next((s for s in suffixes if base.endswith(s)), None)
        if suffix:
            names.add("convcore._kernels." + base[: -len(suffix)])
    return sorted(names)


def pytest_sessionstart(session):
    tree = os.environ["CONVCORE_SANITIZED_TREE"]
    import convcore._kernels._config as config

    if not os.path.realpath(config.__file__).startswith(os.path.realpath(tree) + os.sep):
        raise pytest.UsageError(f"sanitize: convcore's kernels load from {config.__file__}, not from {tree}")
    with open("/proc/self/maps") as f:
        if "libasan" not in f.read():
            raise pytest.UsageError("sanitize: libasan is not loaded (LD_PRELOAD)")


def pytest_sessionfinish(session, exitstatus):
    missing = [m for m in _kernel_modules(os.environ["CONVCORE_SANITIZED_TREE"]) if m not in sys.modules]
    if missing:
        sys.stderr.write(f"sanitize: no test loaded the kernel module(s) {', '.join(missing)}\n")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
