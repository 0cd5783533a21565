"""tools/plot_curves.py: learning curves from run folders' metrics, seeds of one agent in one colour."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SPEC = importlib.util.spec_from_file_location("plot_curves", ROOT / "tools" / "plot_curves.py")
tool = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(tool)


def run_dir(root: Path, name: str, success: list[float]) -> Path:
    run = root / name
    run.mkdir()
    rows = [{"kind": "epoch", "step": 1000}] + [
        {"kind": "eval", "step": 50_000 * (i + 1), "mean_return": 10.0 * i, "std_return": 1.0, "success_rate": v} for i, v in enumerate(success)
    ]
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return run


def test_seeds_of_one_label_share_a_colour_and_a_legend_entry(tmp_path: Path) -> None:
    runs = [run_dir(tmp_path, "m1", [0.1, 0.2]), run_dir(tmp_path, "m2", [0.0, 0.3]), run_dir(tmp_path, "o1", [0.5, 0.9, 0.8])]
    ax = tool.draw(runs, ["MoSS", "MoSS", "oracle"], success=True).axes[0]
    lines = ax.get_lines()
    assert [list(line.get_ydata()) for line in lines] == [[0.1, 0.2], [0.0, 0.3], [0.5, 0.9, 0.8]]
    assert lines[0].get_color() == lines[1].get_color() != lines[2].get_color()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["MoSS", "oracle"]
    returns = tool.draw(runs[:1], ["MoSS"], success=False).axes[0]
    assert list(returns.get_lines()[0].get_ydata()) == [0.0, 10.0]


def test_cli_writes_the_png_and_refuses_a_wrong_number_of_labels(tmp_path: Path, monkeypatch) -> None:
    runs = [str(run_dir(tmp_path, "a", [0.1])), str(run_dir(tmp_path, "b", [0.2]))]
    out = tmp_path / "c.png"
    monkeypatch.setattr(sys, "argv", ["plot_curves.py", *runs, "--metric", "success", "--out", str(out)])
    tool.main()
    assert out.stat().st_size > 5_000
    monkeypatch.setattr(sys, "argv", ["plot_curves.py", *runs, "--labels", "only-one", "--out", str(out)])
    with pytest.raises(SystemExit):
        tool.main()
