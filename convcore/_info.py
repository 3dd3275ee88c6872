"""Build and run-time facts for ``show_config`` and ``python -m convcore info``."""
import platform

import numpy as np
import scipy

from convcore import _threads

__version__ = "0.1.0"


def config():
    from convcore import _gpu

    return {
        "convcore": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "openmp": _threads.openmp_enabled(),
        "threads": _threads.get_num_threads(),
        "blas": _threads.blas_info(),
        "cuda": _gpu.describe(),
    }


def show_config():
    """Print version, OpenMP status, thread count, the BLAS the kernels call and CUDA availability."""
    for key, value in config().items():
        if key == "blas":
            for lib in value:
                print(f"{'blas':>9}: {lib['internal_api']} {lib['version']} ({lib['architecture']}), "
                      f"{lib['num_threads']} threads, {lib['filepath']}")
        else:
            print(f"{key:>9}: {value}")
