"""tools/studies/gridfilter_map.py: implied tasks of a decoder built by hand, fold statistics, the CLI and its plot."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from serving_helpers import make_checkpoint

from agents.parts.grid_filter import LatentGridFilter, grid_points

pytestmark = pytest.mark.slow  # a study of tools/studies/: not in the default tier

ROOT = Path(__file__).resolve().parents[1]
SPEC = importlib.util.spec_from_file_location("gridfilter_map", ROOT / "tools" / "studies" / "gridfilter_map.py")
tool = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(tool)


def l1_decoder(grid: int, flip: float = 1.0) -> LatentGridFilter:
    """r_hat = -|s'_0 - flip z_0| - |s'_1 - z_1|: the task of z is the position (flip z_0, z_1)."""
    f = LatentGridFilter(obs_dim=2, action_dim=2, grid=grid, latent_dim=2, hidden=4, hazard=0.1)
    with torch.no_grad():
        for p in f.parameters():
            p.zero_()
        s2 = torch.tensor([[1.0, 0], [-1, 0], [0, 1], [0, -1]])  # hidden: +-(s'_d - z_d)
        f.transition_in.weight[:, 4:6] = s2
        f.latent_in.weight.copy_(-s2 * torch.tensor([flip, 1.0]))
        f.rest[0].weight.copy_(torch.eye(4))
        f.rest[2].weight.fill_(-1.0)
    return f


def test_implied_tasks_of_a_hand_built_decoder_are_its_grid_and_unfolded() -> None:
    g = tool.implied_tasks(l1_decoder(5), -1.0, 1.0, 41)  # lattice step 0.05 holds every grid point
    assert np.allclose(g.reshape(-1, 2), grid_points(5, 2).numpy(), atol=1e-6)
    assert tool.map_stats(g) == {"folded": 0.0, "collapsed": 0.0, "affine_r2": 1.0, "extent": [2.0, 2.0]}
    mirrored = tool.implied_tasks(l1_decoder(5, flip=-1.0), -1.0, 1.0, 41)
    assert tool.map_stats(mirrored)["folded"] == 0.0  # a mirror image is not a fold
    assert tool.implied_tasks(l1_decoder(5), -1.0, 1.0, 41, grid=3).shape == (3, 3, 2)


def test_a_swapped_pair_of_points_is_a_fold_and_a_merged_column_is_collapsed() -> None:
    g = grid_points(6, 2).numpy().reshape(6, 6, 2)
    g[2, 2], g[3, 3] = g[3, 3].copy(), g[2, 2].copy()
    s = tool.map_stats(g)
    assert 0 < s["folded"] < 0.5 and s["affine_r2"] < 1.0
    g = grid_points(6, 2).numpy().reshape(6, 6, 2)
    g[:, 3] = g[:, 2]  # two grid columns standing for the same tasks: collapsed cells, not folds
    s = tool.map_stats(g)
    assert s["collapsed"] == pytest.approx(5 / 25) and s["folded"] == 0


def test_cli_prints_one_line_per_checkpoint_and_plots(tmp_path, monkeypatch, capsys) -> None:
    ck = make_checkpoint(tmp_path / "gridfilter.pt", algorithm="gridfilter", seed=3)
    png = tmp_path / "map.png"
    argv = ["gridfilter_map.py", str(ck), str(ck), "--lattice", "21", "--episodes", "3", "--plot", str(png)]
    monkeypatch.setattr(sys, "argv", argv)
    tool.main()
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    assert len(lines) == 2 and lines[0] == lines[1] and 0 <= lines[0]["folded"] <= 1
    assert 0 < lines[0]["end_error"] < 3 and lines[0]["final_std"] > 0
    assert png.stat().st_size > 1000
    oracle = make_checkpoint(tmp_path / "oracle.pt", algorithm="oracle", seed=4)
    monkeypatch.setattr(sys, "argv", ["gridfilter_map.py", str(oracle)])
    with pytest.raises(SystemExit):
        tool.main()
    assert "a 'oracle' checkpoint" in capsys.readouterr().err
    monkeypatch.setattr(sys, "argv", ["gridfilter_map.py", str(tmp_path / "missing.pt")])
    with pytest.raises(SystemExit):
        tool.main()
    assert "checkpoint not found" in capsys.readouterr().err
