"""Every case recorded from R torch 0.17.0 (tests/data/rtorch, format in its manifest.json) run
through r_compat the way it was recorded: same values, or the same error at the same stage."""
import json

import pytest

from convcore import r_compat

from _r_helpers import FIXTURES

pytestmark = pytest.mark.usefixtures("r_session")

MANIFEST = json.loads((FIXTURES / "manifest.json").read_text(encoding="utf-8"))
CASES = MANIFEST["cases"]


def test_manifest_lists_every_fixture_file():
    on_disk = {p.name for p in FIXTURES.glob("*.json")} - {"manifest.json"}
    assert on_disk == {c["file"] for c in CASES}
    assert len(CASES) == MANIFEST["n_cases"]


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_recorded_case(case):
    result = r_compat.crosscheck(FIXTURES / case["file"])
    assert result.ok, f"{result.case_id}: {result.detail}"


def test_crosscheck_fails_on_a_wrong_expectation():
    case = json.loads((FIXTURES / "nnf_ct2d_s2_p1_op1.json").read_text(encoding="utf-8"))
    case["expect"]["values"][7] += 1e-3
    assert not r_compat.crosscheck(case).ok
    case = json.loads((FIXTURES / "nn_ct2d_outsize_err_too_small.json").read_text(encoding="utf-8"))
    case["expect"]["stage"] = "construct"
    assert "stage" in r_compat.crosscheck(case).detail
