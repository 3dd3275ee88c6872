"""Cross-checking r_compat against R torch: against recorded outputs, or live against the real R
package ``torch`` when the embedded R session has it."""
import json
import math
import os
from dataclasses import dataclass

import numpy as np

from . import _bridge

# Errors relative to (1 + |expected|), per unit of sqrt(reduction length).
_TOLERANCE = {"float32": 4e-6, "float64": 1e-13}


@dataclass
class CrossCheck:
    """Outcome of one case: ``ok``, a one-line ``detail``, and for value cases the largest error
    relative to (1 + |expected|) with the tolerance it was held to."""

    case_id: str
    ok: bool
    detail: str
    max_rel_err: float = None
    tolerance: float = None


def load_case(case):
    """A case as a dict: given as a dict, or as the path of its .json file."""
    if isinstance(case, dict):
        return case
    with open(os.fspath(case), encoding="utf-8") as fh:
        return json.load(fh)


def r_torch_available():
    """Whether the embedded R session can load the real R package ``torch``."""
    ri = _bridge.rinterface()
    return bool(ri.evalr('suppressWarnings(requireNamespace("torch", quietly = TRUE))')[0])


def _array(field):
    if field is None:
        return None
    return _bridge._RawArray(np.array(field["values"], dtype=np.float64).reshape(field["dim"]))


def error_head(message):
    """R torch's message without the C++ backtrace, whitespace-normalised."""
    return " ".join(message.split("\nException raised from")[0].split())


def _reduction_length(case):
    w = case["weight"]["dim"]
    groups = int(case["args"].get("groups", 1)) if isinstance(case["args"], dict) else 1
    kernel = math.prod(w[2:])
    return (w[1] if case["api"] in ("nnf_conv2d", "nn_conv2d") else w[0] // max(groups, 1)) * kernel


def run_case(case, lookup=".cc_lookup"):
    """Run a recorded case the way it was recorded; ``lookup`` names the R function that resolves
    the API (".cc_lookup": r_compat, ".cc_torch_lookup": the real R torch). Returns a dict:
    ok, value (numpy) | stage, message, class."""
    env = _bridge.install()
    args = case["args"] if isinstance(case["args"], dict) else {}
    if "init" in case["expect"]:
        res = env[".cc_run_init"](env[lookup], _bridge.to_r(case["api"]), _bridge.to_r(args),
                                  _bridge.to_r(case["seed"]))
    else:
        res = env[".cc_run_case"](
            env[lookup], _bridge.to_r(case["api"]), _bridge.to_r(args),
            *[_bridge.to_r(_array(case[k])) for k in ("input", "weight", "bias")],
            _bridge.to_r(case["dtype"]), _bridge.to_r(case["output_size"]),
        )
    return _bridge.from_r(res)


def _compare(case, got, expect):
    """(ok, detail, max_rel_err, tolerance) of a run against an expectation."""
    if "error_head" in expect:
        if got.get("ok", [False])[0]:
            return False, f"expected an error at {expect['stage']}, got values", None, None
        stage, message, classes = got["stage"][0], got["message"][0], list(got["class"])
        problems = []
        if stage != expect["stage"]:
            problems.append(f"stage {stage!r} != {expect['stage']!r}")
        if error_head(message) != " ".join(expect["error_head"].split()):
            problems.append(f"message {error_head(message)!r} != {expect['error_head']!r}")
        if classes != list(expect["class"]):
            problems.append(f"class {classes} != {expect['class']}")
        return not problems, "; ".join(problems) or "same error", None, None
    if not got.get("ok", [False])[0]:
        return False, f"unexpected error at {got['stage'][0]}: {got['message'][0]}", None, None
    value = np.asarray(got["value"], dtype=np.float64)
    want = np.array(expect["values"], dtype=np.float64).reshape(expect["dim"])
    if value.shape != want.shape:
        return False, f"shape {list(value.shape)} != {expect['dim']}", None, None
    if not got["dtype"][0]:
        return False, "result dtype differs from the input's", None, None
    tol = _TOLERANCE[case["dtype"]] * math.sqrt(_reduction_length(case))
    err = float(np.max(np.abs(value - want) / (1 + np.abs(want)), initial=0.0))
    return err <= tol, f"max rel err {err:.3g} (tolerance {tol:.3g})", err, tol


def _check_init(case, got):
    init = case["expect"]["init"]
    problems = []
    bound = init["bound"]
    if not got["float32"][0]:
        problems.append("weight is not float32")
    for name in ("weight", "bias"):
        want, value = init[name], got[name]
        if want is None or value is None:
            if (want is None) != (value is None):
                got_name = "NULL" if value is None else "present"
                problems.append(f"{name}: {got_name}, R torch differs")
            continue
        if list(value.shape) != want["dim"]:
            problems.append(f"{name} shape {list(value.shape)} != {want['dim']}")
        # R torch's own values must lie in the bound too, or the bound itself would be wrong.
        if value.size and (np.max(np.abs(value)) > bound or max(-want["min"], want["max"]) > bound):
            problems.append(f"{name} exceeds the bound {bound}")
    fan_in = math.prod(init["weight"]["dim"][1:])
    if not math.isclose(bound, 1 / math.sqrt(fan_in)):
        problems.append(f"bound {bound} != 1/sqrt({fan_in})")
    return not problems, "; ".join(problems) or "shapes, dtype and bounds as R torch"


def crosscheck(case, live=False):
    """Run ``case`` (a recorded R torch case: dict or .json path; format in the fixtures'
    manifest.json) through r_compat and compare with R torch's recorded outcome: the same values
    within float32/float64 tolerance, or the same error (message before any C++ backtrace,
    whitespace-normalised; class vector; stage). Initialisation cases check shapes, dtype and the
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)) bound (R torch's RNG is not reproduced).

    ``live=True`` also runs the same R code with the real R package ``torch`` (which must be
    installed in the embedded R session, see :func:`r_torch_available`) and requires both runs to
    agree with each other as well. Returns a :class:`CrossCheck`."""
    case = load_case(case)
    got = run_case(case)
    if "init" in case["expect"]:
        ok, detail = _check_init(case, got)
        result = CrossCheck(case["id"], ok, detail)
    else:
        result = CrossCheck(case["id"], *_compare(case, got, case["expect"]))
    if not live:
        return result
    if not r_torch_available():
        raise RuntimeError("live crosscheck needs the R package 'torch' in the embedded R session")
    theirs = run_case(case, lookup=".cc_torch_lookup")
    if "init" in case["expect"]:
        live_ok, live_detail = _check_init(case, theirs)
    elif theirs["ok"][0]:
        value = np.asarray(theirs["value"], dtype=np.float64)
        live_expect = {"values": value.ravel().tolist(), "dim": list(value.shape)}
        live_ok, live_detail, _, _ = _compare(case, got, live_expect)
    else:
        live_expect = {"stage": theirs["stage"][0], "error_head": error_head(theirs["message"][0]),
                       "class": list(theirs["class"])}
        live_ok, live_detail, _, _ = _compare(case, got, live_expect)
    result.ok = result.ok and live_ok
    result.detail = f"recorded: {result.detail}; live R torch: {live_detail}"
    return result
