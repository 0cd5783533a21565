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
