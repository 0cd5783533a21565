"""tools/meta_results.py end to end on a tiny suite of untrained checkpoints: table, JSON, figures, cache."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import pytest
from serving_helpers import make_checkpoint

from agents.checkpoint import build_policy, load_checkpoint, save_checkpoint

TOOL = Path(__file__).resolve().parents[1] / "tools" / "meta_results.py"


def make_run(suite: Path, algo: str, seed: int, finished: bool = True) -> Path:
    """<suite>/<algo>_point_robot_s<seed>/ with policy.pt (stationary PointRobot) and a metrics.jsonl."""
    d = suite / f"{algo}_point_robot_s{seed}"
    d.mkdir(parents=True)
    path = make_checkpoint(d / "policy.pt", algorithm=algo, seed=seed, env={"nonstationary": None})
    ck = load_checkpoint(path)
    total = ck.config["train"]["total_steps"]
    stats = {"env_steps": total if finished else total // 2}
    save_checkpoint(path, build_policy(ck), ck.config, ck.env, stats)
    rows = [{"kind": "eval", "step": s, "mean_return": -20.0 + seed + s / 1000} for s in (1000, 2000, 3000)]
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return d


def run_tool(monkeypatch, capsys, *args: str) -> tuple[str, str]:
    monkeypatch.setattr(sys, "argv", [str(TOOL), *args])
    runpy.run_path(str(TOOL), run_name="__main__")
    out = capsys.readouterr()
    return out.out, out.err


def test_meta_results_reports_caches_and_lists_what_is_missing(tmp_path, monkeypatch, capsys):
    suite = tmp_path / "suite"
    for algo, seed in [("oracle", 0), ("oracle", 1), ("pearl", 0), ("pearl", 1), ("moss", 0)]:
        make_run(suite, algo, seed)
    make_run(suite, "moss", 1, finished=False)
    md, js, img = tmp_path / "r.md", tmp_path / "r.json", tmp_path / "img"
    args = ["--suite", str(suite), "--episodes", "4", "--cfgs", "point_robot", "--seeds", "0 1"]
    args += ["--md", str(md), "--json", str(js), "--img-dir", str(img)]
    out, err = run_tool(monkeypatch, capsys, *args)
    assert "| point_robot | PEARL | 2 |" in out and "| point_robot | MoSS | 1 |" in out
    assert "| point_robot | random policy |" in out
    assert "point_robot, MoSS: s1 training" in out and "point_robot, TCL-PEARL: s0, s1 not started" in out
    assert md.read_text().strip() == out.strip()
    assert (img / "pearl_family_curves.png").is_file() and (img / "pearl_family_embedding.png").is_file()
    raw = json.loads(js.read_text())
    by_run = {r["run"]: r for r in raw["runs"]}
    assert set(by_run) == {
        "oracle_point_robot_s0",
        "oracle_point_robot_s1",
        "pearl_point_robot_s0",
        "pearl_point_robot_s1",
        "moss_point_robot_s0",
    }
    assert by_run["oracle_point_robot_s1"]["zero_shot"]["normalised_score"] == pytest.approx(1.0)
    assert by_run["pearl_point_robot_s1"]["zero_shot"]["oracle_ref"] == "s1"
    assert len(by_run["pearl_point_robot_s0"]["pearl_protocol"]["per_episode_return"]) == 3
    emb = by_run["moss_point_robot_s0"]["embedding"]
    assert emb["latent_dim"] == 3 and emb["n"] == 4 and 0.0 <= emb["esr"] <= 1.0
    assert raw["aggregate"]["point_robot"]["pearl"]["zero_shot_return"]["n"] == 2
    assert (suite / "pearl_point_robot_s0" / "eval_summary.json").is_file()
    assert not (suite / "moss_point_robot_s1" / "eval_summary.json").exists()  # unfinished: not evaluated
    assert "evaluated" in err
    # a second pass reads every run from its cache and reports the same numbers
    out2, err2 = run_tool(monkeypatch, capsys, *args)
    assert "evaluated" not in err2 and err2.count("cached") == 5
    assert out2.split("| env |")[1].split("Not in")[0] == out.split("| env |")[1].split("Not in")[0]
