"""The benchmark's case table (bench/cases.py) stays valid: every case, shrunk by Case.tiny(),
runs through convcore and agrees with torch, and the sizes and FLOP counts the peer table reports
agree with the arrays; the peer table script runs end to end on one tiny case. Skipped where bench/
is not beside tests/ (an installed-package test run)."""
import importlib
import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

import convcore

torch = pytest.importorskip("torch")

_BENCH = Path(__file__).resolve().parent.parent / "bench"
_CASES_PY = _BENCH / "cases.py"
if not _CASES_PY.is_file():
    pytest.skip("bench/cases.py is not in this checkout", allow_module_level=True)
_spec = importlib.util.spec_from_file_location("convcore_bench_cases", _CASES_PY)
cases = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cases)


def test_case_names_are_unique_and_cover_the_issue():
    names = [c.name for c in cases.CASES]
    assert len(names) == len(set(names))
    assert len(cases.ISSUE_CASES) == 12
    assert set(cases.GEMM_BOUND) <= set(names)
    ops = {c.op for c in cases.CASES}
    assert ops == {"conv1d", "conv2d", "conv_transpose1d", "conv_transpose2d"}


@pytest.mark.parametrize("dtype", cases.DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("case", cases.CASES, ids=lambda c: c.name)
def test_tiny_case_matches_torch(case, dtype):
    tiny = case.tiny()
    assert tiny.op == case.op and tiny.kwargs.keys() == case.kwargs.keys()
    x, w, b = tiny.inputs(dtype)
    got = getattr(convcore, tiny.op)(x, w, b, **tiny.kwargs)
    want = getattr(torch.nn.functional, tiny.op)(*map(torch.from_numpy, (x, w, b)), **tiny.kwargs).numpy()
    assert got.dtype == dtype and got.shape == want.shape == tiny.out_shape
    atol, rtol = cases.tolerance(tiny, dtype)
    np.testing.assert_allclose(got, want, atol=atol, rtol=rtol)


@pytest.mark.parametrize("case", cases.CASES, ids=lambda c: c.name)
def test_full_size_shapes_and_flops(case):
    """out_shape and flops of the full case, against torch's shape rule on a meta tensor and a
    direct count of multiply-adds."""
    meta = {k: torch.empty(s, device="meta") for k, s in (("x", case.x_shape), ("w", case.w_shape))}
    out = getattr(torch.nn.functional, case.op)(meta["x"], meta["w"], **case.kwargs)
    assert tuple(out.shape) == case.out_shape
    k = math.prod(case.w_shape[2:])
    if case.transposed:  # every input element meets C_out/groups * k weights
        macs = math.prod(case.x_shape) * (case.c_out // case.groups) * k
    else:  # every output element sums C_in/groups * k products
        macs = math.prod(case.out_shape) * (case.x_shape[1] // case.groups) * k
    assert case.flops == 2 * macs


@pytest.fixture
def peers(monkeypatch):
    """bench/peers.py imported the way the script runs (bench/ on sys.path), with its generic module
    names removed from sys.modules afterwards."""
    monkeypatch.syspath_prepend(str(_BENCH))
    for name in ("peers", "runners", "cases"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    module = importlib.import_module("peers")
    yield module
    for name in ("peers", "runners", "cases"):
        sys.modules.pop(name, None)


def test_peer_table_runs(peers, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(peers, "GEMM_SIZE", 128)
    out = tmp_path / "r.json"
    peers.main(["--cases", "T1-tiny", "--repeat", "1", "--warmup", "0", "--min-sample", "0",
                "--markdown", "--json", str(out)])
    result = json.loads(out.read_text())
    rows = result["rows"]
    assert [(r["case"], r["dtype"]) for r in rows] == [("T1-tiny", "float32"), ("T1-tiny", "float64")]
    assert all(r["ms"]["convcore"] > 0 and r["ms"]["torch"] > 0 for r in rows)
    assert all(r["matches_torch"]["convcore"] for r in rows)
    # the memory probe ran in a subprocess; a tiny case needs well under a megabyte of scratch
    assert all(r["extra_mb"] is None or 0 <= r["extra_mb"] < 1 for r in rows)
    assert set(result["summary"]) == {"float32", "float64"}
    text = capsys.readouterr().out
    assert "| T1-tiny | " in text and "| fp32 convcore |" in text and "geomean" in text
