"""tools/studies/belief_probe.py on the bundled agents: the grid filter's belief places unseen goals, MoSS's does not."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # a study of tools/studies/: not in the default tier
ROOT = Path(__file__).resolve().parents[1]


def probe(asset: str) -> list[dict]:
    out = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "studies" / "belief_probe.py"), str(ROOT / "runtime" / "assets" / asset), "--episodes", "64", "--held-out", "32"],
        capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    return [json.loads(line) for line in out.stdout.splitlines()]


def test_the_grid_filter_belief_reads_unseen_goals_and_moss_reads_them_poorly() -> None:
    (f_test, f_random), moss = probe("gridfilter_point_robot_ns.pt"), probe("moss_point_robot_ns.pt")
    assert f_test["read"] == "belief" and f_test["r2"] > 0.9 and f_random["r2"] > 0.8
    assert f_test["median_error_by_steps_since_switch"]["10"] < 0.2 < f_test["median_error_by_steps_since_switch"]["0"]
    assert {(r["read"], r["episodes"]) for r in moss} == {(n, e) for n in ("belief", "hidden") for e in ("test", "test, random actions")}
    assert next(r for r in moss if r["read"] == "belief" and r["episodes"] == "test")["r2"] < 0.6
