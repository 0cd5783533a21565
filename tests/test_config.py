"""Run configs: bad files and keys are refused with ConfigError naming them; every shipped config loads."""

from __future__ import annotations

from pathlib import Path

import pytest
import structlog
import yaml
from typer.testing import CliRunner

from agents.config import CollectConfig, ConfigError, RunConfig, load_config, parse_config
from runtime.cli import app

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").rglob("*.yaml"))
BASE = {"algorithm": "moss", "env": {"id": "PointRobot"}}


@pytest.fixture(autouse=True)
def _restore_logging():
    yield
    structlog.reset_defaults()  # the CLI points structlog at CliRunner's stderr


def write(tmp_path: Path, raw, name: str = "run.yaml") -> Path:
    p = tmp_path / name
    p.write_text(raw if isinstance(raw, str) else yaml.safe_dump(raw))
    return p


def test_minimal_config_gets_defaults() -> None:
    cfg = parse_config(BASE)
    assert cfg.algorithm == "moss" and cfg.env.id == "PointRobot" and cfg.env.nonstationary is None
    assert cfg.train.total_steps == 100_000 and cfg.sac.hidden == (256, 256)


def test_unknown_key_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config({**BASE, "train": {"totl_steps": 5}})
    assert "train.totl_steps" in str(exc.value)
    p = write(tmp_path, {**BASE, "learning_rate": 0.1})
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    assert "learning_rate" in str(exc.value) and str(p) in str(exc.value)


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({**BASE, "train": {"total_steps": "many"}}, "train.total_steps"),
        ({**BASE, "sac": {"hidden": "wide"}}, "sac.hidden"),
        ({**BASE, "encoder": {"latent_dim": 0}}, "encoder.latent_dim"),
        ({**BASE, "env": {"id": "PointRobot", "p": 1.5}}, "env.p"),
        ({**BASE, "env": {"id": "PointRobot", "nonstationary": "sometimes"}}, "env.nonstationary"),
        ({**BASE, "algorithm": "ppo"}, "algorithm"),
        ({"algorithm": "moss"}, "env"),
    ],
)
def test_wrong_type_or_value_is_named(raw: dict, key: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(raw, source="my.yaml")
    msg = str(exc.value)
    assert msg.startswith("my.yaml: ") and f"{key}:" in msg, msg


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found") as exc:
        load_config(tmp_path / "missing.yaml")
    assert "missing.yaml" in str(exc.value)


def test_bad_yaml(tmp_path: Path) -> None:
    p = write(tmp_path, "algorithm: moss\nenv: {id: PointRobot\n")
    with pytest.raises(ConfigError, match="not valid YAML") as exc:
        load_config(p)
    assert str(p) in str(exc.value)


def test_top_level_not_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="mapping"):
        load_config(write(tmp_path, "- 1\n- 2\n"))


def test_overrides_are_dotted_keys(tmp_path: Path) -> None:
    p = write(tmp_path, BASE)
    cfg = load_config(p, **{"train.total_steps": 40, "seed": 9, "sac.lr": 0.01})
    assert cfg.train.total_steps == 40 and cfg.seed == 9 and cfg.sac.lr == 0.01
    with pytest.raises(ConfigError, match="train.bogus"):
        load_config(p, **{"train.bogus": 1})


def test_shipped_configs_exist() -> None:
    assert len(CONFIGS) >= 2


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_shipped_config_loads(path: Path) -> None:
    if path.parent.name == "collect":  # `runtime collect` configs
        c = load_config(path, model=CollectConfig)
        assert isinstance(c, CollectConfig) and c.levels and c.policy
        return
    cfg = load_config(path)
    assert isinstance(cfg, RunConfig)
    assert cfg.algorithm == path.parent.name  # configs/<algorithm>/<name>.yaml
    # the resolved config (what checkpoints store) parses back to the same config
    assert parse_config(cfg.model_dump(mode="json")) == cfg


def test_cli_train_missing_config(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["train", "--config", str(tmp_path / "missing.yaml"), "--out", str(tmp_path / "run")]
    )
    assert result.exit_code == 2
    assert "missing.yaml" in result.stderr and "not found" in result.stderr
    assert not (tmp_path / "run").exists()


def test_cli_train_bad_key(tmp_path: Path) -> None:
    p = write(tmp_path, {**BASE, "train": {"total_steps": 10, "bogus": 1}})
    result = CliRunner().invoke(app, ["train", "--config", str(p), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert "train.bogus" in result.stderr


def test_cli_train_refuses_to_overwrite_a_run(tmp_path: Path) -> None:
    p = write(tmp_path, BASE)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoint.pt").write_bytes(b"")
    result = CliRunner().invoke(app, ["train", "--config", str(p), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and "--resume" in result.stderr
