"""tools/task_returns.py: zero-shot return by task parameter, each checkpoint beside the reference."""

import importlib.util
import re
import sys
from pathlib import Path

import pytest
from serving_helpers import make_checkpoint

pytestmark = pytest.mark.slow  # a benchmark script

ROOT = Path(__file__).resolve().parents[1]
SPEC = importlib.util.spec_from_file_location("task_returns", ROOT / "tools" / "task_returns.py")
tool = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(tool)


def test_returns_by_task_beside_the_reference(tmp_path: Path, monkeypatch, capsys) -> None:
    moss, oracle = make_checkpoint(tmp_path / "moss.pt"), make_checkpoint(tmp_path / "oracle.pt", "oracle")
    monkeypatch.setattr(sys, "argv", ["task_returns.py", str(moss), "--reference", str(oracle), "--splits", "test", "--out", str(tmp_path / "r.png")])
    tool.main()
    rows = dict(re.findall(r"^\| (\S+(?: \(reference\))?) \| test \| \d+ \| [-\d.]+ \| (-?[\d.]+) \|$", capsys.readouterr().out, re.M))
    assert rows["oracle (reference)"] == "1.00" and "moss" in rows
    assert (tmp_path / "r.png").stat().st_size > 10_000
    other = make_checkpoint(tmp_path / "wind.pt", env={"id": "PointRobotWind"})
    monkeypatch.setattr(sys, "argv", ["task_returns.py", str(other), "--reference", str(oracle), "--splits", "test"])
    with pytest.raises(SystemExit, match="PointRobotWind"):
        tool.main()
