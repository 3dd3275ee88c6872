"""Effective thread count, and a cached BLAS thread limiter.

One function decides how many threads a kernel may use: the value given to
``set_num_threads``, else OMP_NUM_THREADS, else the usable cores; 1 when the
extension was built without OpenMP.
"""
import os
import threading

_lock = threading.RLock()  # re-entered: the limiter builds the controller under it
_requested = None  # set by set_num_threads
_controller = None


def _usable_cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _default_threads():
    env = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    return _usable_cores()


_openmp = None
_default = None


def openmp_enabled():
    global _openmp
    if _openmp is None:
        from convcore._kernels._config import openmp_enabled as enabled

        _openmp = bool(enabled())
    return _openmp


def set_num_threads(n):
    """Use ``n`` threads in convcore's kernels (``None`` restores the default)."""
    global _requested
    if n is not None:
        if isinstance(n, bool) or not isinstance(n, int):
            raise TypeError(f"set_num_threads: n must be an int or None, got {type(n).__name__}")
        if n < 1:
            raise ValueError(f"set_num_threads: n must be >= 1, got {n}")
    _requested = n


def get_num_threads():
    """Number of threads convcore's kernels will use (the default is read once per process)."""
    global _default
    if _requested is not None:
        return _requested if openmp_enabled() else 1
    if _default is None:
        _default = _default_threads() if openmp_enabled() else 1
    return _default


def _blas_controller():
    """threadpoolctl controller of the BLAS that scipy.linalg.cython_blas calls, built once."""
    global _controller
    if _controller is None:
        with _lock:
            if _controller is None:
                import scipy.linalg.cython_blas  # noqa: F401  (loads scipy's BLAS)
                from threadpoolctl import ThreadpoolController

                blas = ThreadpoolController().select(user_api="blas")
                scipy_libs = [lib for lib in blas.lib_controllers if "scipy" in os.path.dirname(lib.filepath)]
                if scipy_libs:
                    blas.lib_controllers = scipy_libs
                _controller = blas
    return _controller


def _thread_setters():
    """(get, set) pairs of the kernels' BLAS thread count.

    For OpenBLAS the library's own functions are called through ctypes: threadpoolctl's setter
    silently does nothing when called from any Python thread but the first one that used it.
    """
    global _setters
    if _setters is None:
        with _lock:
            if _setters is None:
                pairs = []
                for lib in _blas_controller().lib_controllers:
                    pair = None
                    if lib.internal_api == "openblas":
                        for prefix in ("", "scipy_"):
                            for suffix in ("", "64_", "_64"):
                                get = getattr(lib.dynlib, f"{prefix}openblas_get_num_threads{suffix}", None)
                                put = getattr(lib.dynlib, f"{prefix}openblas_set_num_threads{suffix}", None)
                                if pair is None and get is not None and put is not None:
                                    pair = (get, put)
                    pairs.append(pair or (lib.get_num_threads, lib.set_num_threads))
                _setters = pairs
    return _setters


_setters = None
_single_users = 0  # callers currently inside blas_single_threaded()
_saved_limits = None


class blas_single_threaded:
    """Hold BLAS to one thread while OpenMP threads each call it.

    Reference-counted, so that concurrent Python threads neither restore the limit
    early nor save each other's temporary limit as the user's setting.
    """

    __slots__ = ()

    def __enter__(self):
        global _single_users, _saved_limits
        setters = _thread_setters()
        with _lock:
            if _single_users == 0:
                _saved_limits = [get() for get, _ in setters]
                for _, put in setters:
                    put(1)
            _single_users += 1

    def __exit__(self, *exc):
        global _single_users
        with _lock:
            _single_users -= 1
            if _single_users == 0:
                for (_, put), n in zip(_thread_setters(), _saved_limits):
                    put(n)
        return False


def blas_info():
    """Descriptions of the BLAS libraries the kernels call (for ``show_config``)."""
    return [
        {k: lib.info().get(k) for k in ("internal_api", "version", "num_threads", "architecture", "filepath")}
        for lib in _blas_controller().lib_controllers
    ]
