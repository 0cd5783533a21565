"""tools/studies/offline_oracle.py: SAC given the true task, trained on an offline dataset with a FOCAL config's settings."""

import importlib.util
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from agents.config import EnvConfig
from agents.training.datasets import collect_dataset

pytestmark = pytest.mark.slow  # a study of tools/studies/: not in the default tier

ROOT = Path(__file__).resolve().parents[1]
SPEC = importlib.util.spec_from_file_location("offline_oracle", ROOT / "tools" / "studies" / "offline_oracle.py")
tool = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(tool)


def test_offline_oracle_trains_on_the_dataset_and_reports_each_evaluation(tmp_path: Path, monkeypatch, capsys) -> None:
    data = collect_dataset(None, EnvConfig(id="PointRobotWind"), "train", {"random": (1.0, 2)}, seed=0)
    data.save(tmp_path / "train.npz")
    argv = ["offline_oracle.py", "--config", str(ROOT / "configs" / "focal" / "point_robot_wind.yaml"), "--dataset", str(tmp_path / "train.npz"),
            "--steps", "20", "--eval-every", "10", "--episodes", "2", "--set", "sac.batch_size=64", "--set", "sac.hidden=[32, 32]"]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    tool.main()
    out = capsys.readouterr().out
    assert "80 episodes" in out and "batch 64" in out
    steps = [(int(m[1]), float(m[2])) for m in re.finditer(r"step (\d+): test return (-?[\d.]+)", out)]
    assert [s for s, _ in steps] == [10, 20]
    assert all(np.isfinite(r) and -40 < r < 0 for _, r in steps)  # PointRobotWind's return: minus 20 distances
