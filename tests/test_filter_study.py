"""tools/filter_study.py: the error-by-step report, and a tiny run end to end."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))  # the study imports its sibling encoder_study
SPEC = importlib.util.spec_from_file_location("filter_study", ROOT / "tools" / "filter_study.py")
study = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(study)


def test_error_by_step_reports_medians_per_step_and_r2_after_settling() -> None:
    y = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0], [0.5, 0.5]])
    since = torch.tensor([0, 0, 1, 5, 5, 5])
    x = y.clone()
    x[0] += torch.tensor([0.3, 0.4])  # error 0.5 at step 0
    x[1] += torch.tensor([0.0, 0.1])  # error 0.1 at step 0
    x[2] += torch.tensor([0.6, 0.8])  # error 1.0 at step 1
    out = study.error_by_step(nn.Identity(), x, y, since, settle=5)
    assert out["median_error"][0] == pytest.approx(0.1)  # torch's median of an even count: the lower one
    assert out["median_error"][1] == pytest.approx(1.0) and out["median_error"][5] == 0.0
    assert out["r2"] == 1.0  # exact at every row >= 5 steps after a switch


def test_tiny_run_writes_a_report_per_model(tmp_path, monkeypatch) -> None:
    out = tmp_path / "study.jsonl"
    argv = ["filter_study.py", "--config", str(ROOT / "configs" / "filter" / "point_robot_ns.yaml"), "--episodes", "12",
            "--held-out", "6", "--updates", "2", "--every", "2", "--batch", "4", "--grid", "4", "--json", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    study.main()
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["update"] == 2 and rows[0]["model"] == "filter grid 4^2 hidden 32"
    assert set(rows[0]["median_error"]) == {str(k) for k in study.REPORT_STEPS}  # JSON keys


def test_trained_filter_read_on_refined_acting_grids(tmp_path, monkeypatch) -> None:
    """--trained --refine 1 2 on a filter checkpoint: one row per grid; refine 1 is the relabelled belief."""
    sys.path.insert(0, str(ROOT / "tests"))
    from serving_helpers import make_checkpoint

    ck = make_checkpoint(tmp_path / "filter.pt", algorithm="filter", seed=4)
    out = tmp_path / "study.jsonl"
    argv = ["filter_study.py", "--config", str(ROOT / "configs" / "filter" / "point_robot_ns.yaml"), "--episodes", "12",
            "--held-out", "6", "--updates", "0", "--policy", str(ck), "--trained", "--refine", "1", "2", "--json", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    study.main()
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["model"].split(": ")[1] for r in rows] == ["belief", "belief on the acting grid, refine 1", "belief on the acting grid, refine 2"]
    assert rows[1]["median_error"] == rows[0]["median_error"] and rows[1]["r2"] == rows[0]["r2"]
    assert rows[2]["median_error"] != rows[1]["median_error"]
