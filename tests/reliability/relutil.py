"""Helpers of the reliability tests: torch as the oracle, and isolated child processes (a crash
there fails one test instead of killing pytest; an address-space limit protects the machine)."""
import json
import math
import subprocess
import sys
import textwrap
import warnings

import numpy as np

import convcore
from torch_oracle import NDIM, TRANSPOSED, assert_close_to_torch, torch_call as torch_conv  # noqa: F401

# per-element error bound relative to sum |x*w| + |b|, per sqrt(reduction length)
RTOL = {np.dtype(np.float32): 2e-6, np.dtype(np.float64): 1e-13}


def under_sanitizer():
    """True in tests/sanitize.sh's runs (libasan preloaded)."""
    try:
        with open("/proc/self/maps") as f:
            return "libasan" in f.read()
    except OSError:
        return False


def convcore_conv(op, x, w, b=None, **kwargs):
    return getattr(convcore, op)(x, w, b, **kwargs)


def assert_matches_torch(op, got, x, w, b=None, **kwargs):
    assert_close_to_torch(op, got, x, w, b, RTOL, **kwargs)


# Prepended to every child: the address-space limit turns any attempt to allocate a giant
# buffer into a MemoryError instead of letting the kernel write it into swap and the OOM killer.
# Under AddressSanitizer (which reserves terabytes of shadow memory) tests/sanitize.sh sets
# max_allocation_size_mb instead.
_CHILD_PRELUDE = """
import json, os, resource, sys
import numpy as np
import convcore

def _vm_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024

if {limit} and "libasan" not in open("/proc/self/maps").read():
    _lim = _vm_bytes() + {limit}
    resource.setrlimit(resource.RLIMIT_AS, (_lim, _lim))

def report(**result):
    print("RESULT " + json.dumps(result), flush=True)
"""


def run_child(body, headroom_bytes=2 * 2**30, timeout=120):
    """Run ``body`` in a fresh interpreter that may map at most ``headroom_bytes`` more than it
    has after importing convcore; return (returncode, results reported by ``report(**kw)``, output)."""
    code = _CHILD_PRELUDE.format(limit=int(headroom_bytes)) + textwrap.dedent(body)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
    results = [json.loads(line[7:]) for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    return proc.returncode, results, proc.stdout + proc.stderr
