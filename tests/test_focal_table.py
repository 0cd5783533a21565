"""tools/focal_table.py: the FOCAL table from finished runs, beside the paper and the optimum of the split."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from agents.config import EnvConfig, parse_config
from agents.training.datasets import collect_dataset
from agents.training.trainer import Trainer

pytestmark = pytest.mark.slow  # trains a small run; the tool is a benchmark script

ROOT = Path(__file__).resolve().parents[1]
SPEC = importlib.util.spec_from_file_location("focal_table", ROOT / "tools" / "focal_table.py")
tool = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(tool)


def test_table_of_a_finished_run(tmp_path: Path, monkeypatch, capsys) -> None:
    data = tmp_path / "datasets" / "point_robot_wind"
    for split in ("train", "test"):
        collect_dataset(None, EnvConfig(id="PointRobotWind"), split, {"random": (1.0, 2)}, seed=0).save(data / f"{split}.npz")
    cfg = {
        "algorithm": "focal", "seed": 0, "env": {"id": "PointRobotWind"},
        "offline": {"dataset": str(data / "train.npz"), "context_dataset": str(data / "test.npz"), "context_size": 16},
        "focal": {"encoder_hidden": [32, 32], "meta_batch": 8, "context_size": 16},
        "sac": {"hidden": [32, 32], "batch_size": 64},
        "train": {"total_steps": 40, "policy_updates": 20, "eval_every": 20, "eval_episodes": 2, "checkpoint_every": 20, "device": "cpu"},
    }  # fmt: skip
    runs = tmp_path / "runs"
    Trainer(parse_config(cfg), runs / "focal_point_robot_wind_s0").train()
    (runs / "focal_point_robot_wind_s0" / "DONE").touch()
    (runs / "series_point_robot_wind_s0").mkdir()  # unfinished: no DONE, no "training done" in a log: left out
    out = tmp_path / "out"
    argv = ["focal_table.py", "--runs", str(runs), "--datasets", str(tmp_path / "datasets"), "--episodes", "10", "--contexts", "2",
            "--md", str(out / "t.md"), "--json", str(out / "t.json"), "--plot", str(out / "c.png")]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    tool.main()
    rows = [r for r in (out / "t.md").read_text().splitlines() if r.startswith("| PointRobotWind | FOCAL |")]
    assert len(rows) == 2  # the return row and the embedding row
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    assert cells[-1] == "-5.47" and cells[-2] == "-5.67 (0.30)"  # the split's optimum and FOCAL++ Table 1
    res = json.loads((out / "t.json").read_text())
    ret = res["runs"]["point_robot_wind"]["focal"]["0"]["context_return"]
    assert cells[2].startswith(f"{ret:.2f} (—, n=1)") and float(cells[3]) == pytest.approx(ret - res["optimum"]["point_robot_wind"], abs=0.01)
    assert "series" not in res["runs"]["point_robot_wind"]
    assert (out / "c.png").stat().st_size > 10_000
