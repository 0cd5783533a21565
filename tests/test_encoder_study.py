"""tools/encoder_study.py: a variant's overrides, list values with commas included."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SPEC = importlib.util.spec_from_file_location("encoder_study", ROOT / "tools" / "encoder_study.py")
study = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(study)
CONFIG = str(ROOT / "configs" / "moss" / "point_robot_ns.yaml")


def test_variant_keeps_list_values_whole_and_splits_pairs() -> None:
    cfg = study.variant_config(CONFIG, "encoder.decoder_hidden=[256, 32],encoder.lr=0.001, encoder.alpha_z=0.5")
    assert cfg.encoder.decoder_hidden == (256, 32)
    assert cfg.encoder.lr == 0.001 and cfg.encoder.alpha_z == 0.5


def test_empty_variant_is_the_config_as_it_is() -> None:
    assert study.variant_config(CONFIG, "") == study.variant_config(CONFIG, " ")
    assert study.variant_config(CONFIG, "").encoder.lr == 0.003


def test_unknown_key_in_a_variant_is_refused_by_name() -> None:
    with pytest.raises(Exception, match="no_such_key"):
        study.variant_config(CONFIG, "encoder.no_such_key=1")


def test_probe_reports_components_by_base_consistent_with_purity() -> None:
    """For mixtures: every held-out episode is counted once in components_by_base, and purity is the share
    of episodes in their component's majority base (here on CheetahMultiTask's one-hot base tasks)."""
    import numpy as np
    import torch

    from agents.config import parse_config
    from agents.evaluation import make_env
    from agents.training.trainer import build_agent

    cfg = parse_config(
        {
            "algorithm": "moss",
            "env": {"id": "CheetahMultiTask", "max_episode_steps": 5},
            "encoder": {"latent_dim": 2, "n_components": 3, "embed_dim": 8, "hidden_dim": 8, "decoder_hidden": [8]},
            "sac": {"hidden": [8]},
        }
    )
    torch.manual_seed(0)
    buf = study.collect(cfg, None, 24, 0, "test")
    _, learner = build_agent(cfg, make_env(cfg.env, "train"))
    out = study.probe(learner, buf, settle=0)
    table = np.asarray(out["components_by_base"])  # [bases seen, K]
    assert table.shape[1] == 3 and table.sum() == 24
    assert out["purity"] == round(table.max(0).sum() / 24, 3)
    assert out["components_used"] == int((table.sum(0) > 0).sum())
