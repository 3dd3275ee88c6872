"""Build facts of the compiled kernels."""
from convcore._kernels._openmp cimport CONVCORE_OPENMP, omp_get_max_threads


def openmp_enabled():
    """True when the kernels were compiled with OpenMP."""
    return bool(CONVCORE_OPENMP)


def openmp_max_threads():
    return omp_get_max_threads()
