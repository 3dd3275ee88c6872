"""Extension list and OpenMP probe; all metadata lives in pyproject.toml.

Environment switches:
  CONVCORE_REQUIRE_OPENMP=1   fail the build instead of falling back to a serial build
  CONVCORE_DEBUG=1            boundscheck/wraparound on in every kernel (for tests)
  CONVCORE_SANITIZE=address,undefined   compile and link with -fsanitize=...
  CONVCORE_PORTABLE=1         no -march=native (for wheels that must run on other CPUs)
"""
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from glob import glob

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

OPENMP_FLAGS = ["-fopenmp"]
PROBE = textwrap.dedent(
    """
    #include <omp.h>
    #include <stdio.h>
    int main(void) {
        int n = 0;
        #pragma omp parallel reduction(+:n)
        n += 1;
        printf("%d", n > 0 && omp_get_max_threads() > 0);
        return 0;
    }
    """
)


def openmp_works(compiler="cc"):
    """Compile, link and run a tiny OpenMP program with the C compiler."""
    tmp = tempfile.mkdtemp()
    try:
        src = os.path.join(tmp, "probe.c")
        exe = os.path.join(tmp, "probe")
        with open(src, "w") as f:
            f.write(PROBE)
        subprocess.run([compiler, *OPENMP_FLAGS, src, "-o", exe], check=True, capture_output=True)
        return subprocess.run([exe], check=True, capture_output=True, text=True).stdout == "1"
    except (OSError, subprocess.CalledProcessError):
        return False
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def compiler_accepts(flag, compiler="cc"):
    tmp = tempfile.mkdtemp()
    try:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as f:
            f.write("int main(void) { return 0; }\n")
        subprocess.run([compiler, flag, src, "-o", os.path.join(tmp, "probe")], check=True, capture_output=True)
        return True
    except (OSError, subprocess.CalledProcessError):
        return False
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def build_flags():
    compile_args = ["-O3"]
    link_args = []
    # A source build runs where it was built: let the direct loops use the CPU's vector width.
    if os.environ.get("CONVCORE_PORTABLE") != "1" and compiler_accepts("-march=native", os.environ.get("CC", "cc")):
        compile_args.append("-march=native")
    if openmp_works(os.environ.get("CC", "cc")):
        compile_args += OPENMP_FLAGS
        link_args += OPENMP_FLAGS
    elif os.environ.get("CONVCORE_REQUIRE_OPENMP") == "1":
        sys.exit("convcore: OpenMP probe failed and CONVCORE_REQUIRE_OPENMP=1")
    else:
        print("WARNING: convcore: OpenMP not available; building serial kernels", file=sys.stderr)
    sanitize = os.environ.get("CONVCORE_SANITIZE")
    if sanitize:
        flag = f"-fsanitize={sanitize}"
        # -fno-wrapv undoes CPython's -fwrapv, which would hide signed overflow from UBSan
        compile_args += [flag, "-fno-omit-frame-pointer", "-g", "-O1", "-fno-wrapv"]
        link_args += [flag]
    return compile_args, link_args


def extensions():
    compile_args, link_args = build_flags()
    debug = os.environ.get("CONVCORE_DEBUG") == "1"
    exts = [
        Extension(
            path[:-4].replace(os.sep, "."),
            [path],
            include_dirs=[numpy.get_include()],
            define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
            extra_compile_args=compile_args,
            extra_link_args=link_args,
        )
        for path in sorted(glob(os.path.join("convcore", "_kernels", "*.pyx")))
    ]
    directives = {
        "language_level": 3,
        "boundscheck": debug,
        "wraparound": debug,
        "cdivision": not debug,
        "initializedcheck": debug,
        "embedsignature": True,
    }
    return cythonize(exts, compiler_directives=directives, quiet=True)


setup(ext_modules=extensions(), cmdclass={"build_ext": build_ext})
