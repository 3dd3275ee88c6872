"""Live mode: the same R code run with the real R package torch and with r_compat."""
import json

import pytest

from convcore import r_compat

from _r_helpers import FIXTURES

pytestmark = pytest.mark.usefixtures("r_session")

CASES = json.loads((FIXTURES / "manifest.json").read_text(encoding="utf-8"))["cases"]


def test_live_cases():
    if not r_compat.r_torch_available():
        pytest.skip("the R package 'torch' is not installed in the embedded R session; "
                    "live cross-checks need it (recorded fixtures are checked instead)")
    results = [r_compat.crosscheck(FIXTURES / case["file"], live=True) for case in CASES]
    failed = [f"{r.case_id}: {r.detail}" for r in results if not r.ok]
    assert not failed, "\n".join(failed)


def test_live_mode_refuses_without_r_torch():
    if r_compat.r_torch_available():
        pytest.skip("R torch is installed here")
    with pytest.raises(RuntimeError, match="R package 'torch'"):
        r_compat.crosscheck(FIXTURES / CASES[0]["file"], live=True)


def test_live_comparison_logic(monkeypatch):
    """The live branch of crosscheck, with r_compat standing in for R torch: identical runs agree,
    a perturbed "live" result is reported."""
    from convcore.r_compat import _crosscheck

    run_case = _crosscheck.run_case
    perturb = {"on": False}

    def stand_in(case, lookup=".cc_lookup"):
        got = run_case(case, ".cc_lookup")
        if lookup == ".cc_torch_lookup" and perturb["on"] and got["ok"][0]:
            got["value"] = got["value"] + 1e-2
        return got

    monkeypatch.setattr(_crosscheck, "run_case", stand_in)
    monkeypatch.setattr(_crosscheck, "r_torch_available", lambda: True)
    for name in ("nnf_ct2d_s2_p1_op1.json", "nn_ct2d_outsize_err_too_small.json",
                 "init_nn_ct2d_nobias.json"):
        result = r_compat.crosscheck(FIXTURES / name, live=True)
        assert result.ok and "live R torch" in result.detail, result.detail
    perturb["on"] = True
    assert not r_compat.crosscheck(FIXTURES / "nnf_ct2d_s2_p1_op1.json", live=True).ok
