"""The embedded R session: installing the R API, the Python dispatcher R calls, value conversion.

R arrays and numpy arrays are converted through buffers, one copying pass each way: R's memory is
column-major, so it is viewed with R's dims and Fortran strides (rpy2's memoryview), which keeps
shape and index meaning (R ``x[i, j]`` is numpy ``x[i-1, j-1]``), and copied to C order; numpy
arrays are written into a fresh R vector the same way round.
"""
import atexit
import os

import numpy as np

from . import _ops

_R_FILE = os.path.join(os.path.dirname(__file__), "rtorch.R")
_RAW_OPS = {"round_float32", "copy"}  # results are a tensor's data, not a tensor
_OPS = {
    name: getattr(_ops, name)
    for name in (
        "conv2d", "conv_transpose2d", "conv_transpose1d", "pad", "manual_seed", "randn",
        "init_parameters", "round_float32", "copy",
    )
}
_state = {}
# rpy2 objects freed during interpreter teardown print "Exception ignored" noise: free them before.
atexit.register(_state.clear)


class RError(Exception):
    """An R condition: ``message`` is conditionMessage(), ``classes`` the class vector."""

    def __init__(self, message, classes):
        super().__init__(message)
        self.message = message
        self.classes = list(classes)


def rinterface():
    """rpy2's low-level interface with R started (rpy2 is imported here, never at import time)."""
    try:
        import rpy2.rinterface as ri
    except ImportError as exc:  # also raised when R's shared library cannot be loaded
        raise ImportError(
            "convcore.r_compat needs R and rpy2>=3.5.17,<3.6 (pip install 'convcore[r]'): "
            f"{exc}"
        ) from exc
    from rpy2.rinterface_lib import embedded

    if not embedded.isready():  # start R once (initr_simple() re-registers hooks on every call)
        saved = os.environ.get("LD_LIBRARY_PATH")
        ri.initr_simple()
        # rpy2 prepends R's library dirs (e.g. /usr/lib/x86_64-linux-gnu) to LD_LIBRARY_PATH: too
        # late for this process, but child processes inherit it, and a Python started that way can
        # load the system's libpython instead of its own (losing its site-packages).
        if saved is None:
            os.environ.pop("LD_LIBRARY_PATH", None)
        else:
            os.environ["LD_LIBRARY_PATH"] = saved
    return ri


def install():
    """Define the R API in the embedded R session and attach it as "convcore"; returns its
    environment. Idempotent."""
    if "env" in _state:
        return _state["env"]
    ri = rinterface()
    env = ri.evalr("new.env(parent = baseenv())")
    _state["py"] = ri.rternalize(_dispatch)  # kept referenced for as long as R may call it
    env[".py"] = _state["py"]
    ri.baseenv["sys.source"](ri.StrSexpVector([_R_FILE]), envir=env)
    ri.baseenv["attach"](
        env, name=ri.StrSexpVector(["convcore"]), **{"warn.conflicts": ri.BoolSexpVector([False])}
    )
    _state["env"] = env
    return env


# ---- conversion ---------------------------------------------------------------------------------

def _names(sexp):
    names = sexp.names
    return None if names is rinterface().NULL else list(names)


def _array_from_r(vec, dtype=np.float64):
    """A C-ordered copy (R's memory is R's to free) made in one pass."""
    if isinstance(vec, rinterface().FloatSexpVector) and len(vec):
        view = np.asarray(vec.memoryview())  # rpy2 gives R's dims with column-major strides
    else:  # integer/logical arrays, and empty ones (which have no memoryview)
        dims = [int(d) for d in vec.do_slot("dim")]
        view = np.reshape(np.array(list(vec), dtype=np.float64), dims, order="F")
    return np.array(view, dtype=dtype, order="C", copy=True)


def from_r(sexp):
    """A Python value for an R value; see _ops for the conventions."""
    ri = rinterface()
    if sexp is ri.NULL:
        return None
    if isinstance(sexp, ri.ListSexpVector):
        names = _names(sexp)
        if names and names[0] == ".tensor":
            dtype = np.float32 if sexp[2][0] == "float32" else np.float64
            return _array_from_r(sexp[1], dtype)
        items = [from_r(item) for item in sexp]
        if names and all(names):
            return dict(zip(names, items))
        return items
    if isinstance(sexp, ri.StrSexpVector):
        return _ops.Chars(sexp)
    if isinstance(sexp, (ri.FloatSexpVector, ri.IntSexpVector, ri.BoolSexpVector)):
        if "dim" in sexp.list_attrs():
            return _array_from_r(sexp)
        if isinstance(sexp, ri.BoolSexpVector):
            return [None if v is ri.NA_Logical else bool(v) for v in sexp]
        return [None if v is ri.NA_Integer else v for v in sexp]
    raise TypeError(f"convcore.r_compat cannot take an R value of type {sexp.typeof}")


def r_array(arr):
    """An R double array with ``arr``'s shape and index meaning."""
    ri = rinterface()
    arr = np.asarray(arr)
    vec = ri.baseenv["numeric"](arr.size)
    # writing arr.T into a C-ordered view of reversed dims fills R's column-major memory in one pass
    if arr.size:
        np.asarray(vec.memoryview()).reshape(arr.shape[::-1])[...] = arr.T
    vec.do_slot_assign("dim", ri.IntSexpVector([int(d) for d in arr.shape]))
    return vec


def _named_list(items):
    ri = rinterface()
    lst = ri.ListSexpVector([to_r(v) for v in items.values()])
    lst.do_slot_assign("names", ri.StrSexpVector(list(items)))
    return lst


def tensor_payload(arr):
    """The R side's list(.tensor, data, dtype) for a float32/float64 numpy array."""
    dtype = "float32" if np.asarray(arr).dtype == np.float32 else "float64"
    return _named_list({".tensor": True, "data": _RawArray(arr), "dtype": dtype})


class _RawArray:
    """Marks an array to be sent as plain R data rather than as a tensor."""

    def __init__(self, arr):
        self.arr = arr


def to_r(value):
    ri = rinterface()
    if value is None:
        return ri.NULL
    if isinstance(value, ri.Sexp):
        return value
    if isinstance(value, _RawArray):
        return r_array(value.arr)
    if isinstance(value, np.ndarray):
        if value.dtype in (np.float32, np.float64):
            return tensor_payload(value)
        return r_array(value)  # R doubles: a float32 tensor where R torch would make one
    if isinstance(value, dict):
        return _named_list(value)
    if isinstance(value, (bool, np.bool_)):
        return ri.BoolSexpVector([bool(value)])
    if isinstance(value, (int, float, np.integer, np.floating)):
        return ri.FloatSexpVector([float(value)])
    if isinstance(value, str):
        return ri.StrSexpVector([value])
    if isinstance(value, (list, tuple)):
        if all(isinstance(v, str) for v in value) and value:
            return ri.StrSexpVector(list(value))
        if all(isinstance(v, (int, float, np.integer, np.floating)) for v in value):
            if not any(isinstance(v, (bool, np.bool_)) for v in value):
                return ri.FloatSexpVector([float(v) for v in value])
        return ri.ListSexpVector([to_r(v) for v in value])
    raise TypeError(f"convcore.r_compat cannot send a {type(value).__name__} to R")


# ---- the dispatcher R calls ---------------------------------------------------------------

_CPP_CLASS = ["Rcpp::exception", "C++Error", "error", "condition"]


def _dispatch(op, args):
    """`.py(op, list(...))` from R: list(ok = TRUE, value) or list(ok = FALSE, message, class)."""
    op = op[0]
    try:
        value = _OPS[op](*[from_r(a) for a in args])
        if op in _RAW_OPS:
            value = _RawArray(value)
        return _named_list({"ok": True, "value": value})
    except _ops.LibtorchError as exc:
        return _named_list({"ok": False, "message": str(exc), "class": _CPP_CLASS})
    except Exception as exc:  # a bug here must reach the R user as an R error, not crash R
        return _named_list({
            "ok": False, "message": f"convcore.r_compat: {type(exc).__name__}: {exc}",
            "class": ["simpleError", "error", "condition"],
        })


def call(fun, *args, **kwargs):
    """Call the R function (or module) ``fun`` — a name in the convcore R environment or an R
    object — with Python arguments; numpy arrays become tensors of their dtype. Returns the
    converted result; an R error is raised as :class:`RError`."""
    env = install()
    ri = rinterface()
    if isinstance(fun, str):
        fun = env[fun]
    values = [to_r(a) for a in args] + [to_r(v) for v in kwargs.values()]
    arglist = ri.ListSexpVector(values)
    arglist.do_slot_assign("names", ri.StrSexpVector([""] * len(args) + list(kwargs)))
    res = env[".cc_pycall"](fun, arglist)
    out = dict(zip(_names(res), res))
    if not from_r(out["ok"])[0]:
        raise RError(from_r(out["message"])[0], from_r(out["class"]))
    value = out["value"]
    if isinstance(value, ri.SexpClosure):
        return value
    return from_r(value)
