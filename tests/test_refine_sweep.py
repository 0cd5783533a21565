"""tools/refine_sweep.py: rows equal `runtime eval --policy-set refine=R`, and a plot."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest
from serving_helpers import make_checkpoint
from typer.testing import CliRunner

from runtime.cli import app

ROOT = Path(__file__).resolve().parents[1]
SPEC = importlib.util.spec_from_file_location("refine_sweep", ROOT / "tools" / "refine_sweep.py")
tool = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(tool)


def test_sweep_rows_are_what_runtime_eval_reports_and_the_plot_is_written(tmp_path, monkeypatch) -> None:
    ck = make_checkpoint(tmp_path / "filter.pt", algorithm="filter", seed=5)
    oracle = make_checkpoint(tmp_path / "oracle.pt", algorithm="oracle", seed=6)
    out, png = tmp_path / "rows.jsonl", tmp_path / "delays.png"
    argv = ["refine_sweep.py", str(ck), "--reference", str(oracle), "--refine", "1", "3", "--seeds", "7", "8",
            "--episodes", "3", "--threads", "1", "--json", str(out), "--plot", str(png)]
    monkeypatch.setattr(sys, "argv", argv)
    tool.main()
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["seed"], r["refine"]) for r in rows] == [(7, 1), (7, 3), (8, 1), (8, 3)]
    assert png.stat().st_size > 1000
    res = CliRunner().invoke(app, ["eval", "--checkpoint", str(ck), "--reference", str(oracle), "--episodes", "3",
                                   "--seed", "8", "--policy-set", "refine=3", "--json"])
    cli = json.loads(res.output.strip().splitlines()[-1])
    assert rows[3]["score"] == pytest.approx(cli["normalised_score"], abs=1e-4)
    assert rows[3]["delay_median"] == cli["adaptation_delay"]["median"] and rows[3]["switches"] == cli["adaptation_delay"]["switches"]
    assert rows[2]["mean_return"] != rows[3]["mean_return"]  # the grid changed what it did


def test_a_checkpoint_without_a_grid_is_refused(tmp_path) -> None:
    moss = make_checkpoint(tmp_path / "moss.pt", algorithm="moss")
    with pytest.raises(SystemExit, match="grid filter"):
        tool.sweep([str(moss)], [2], str(make_checkpoint(tmp_path / "o.pt", algorithm="oracle")), [1], "test", 1)
