"""Run configs: bad files and keys are refused with ConfigError naming them; every shipped config loads."""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args

import pytest
import structlog
import yaml
from typer.testing import CliRunner

from agents.config import (
    RUN_MODELS,
    CollectConfig,
    ConfigError,
    EncoderConfig,
    EnvConfig,
    FocalConfig,
    FocalRun,
    GridFilterConfig,
    GridFilterRun,
    MoSSRun,
    OracleRun,
    PearlConfig,
    PearlRun,
    SACConfig,
    TrainConfig,
    load_config,
    parse_config,
)
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
        assert isinstance(c, CollectConfig) and (bool(c.levels and c.policy) != (c.per_task is not None))
        return
    cfg = load_config(path)
    assert type(cfg) in RUN_MODELS and cfg.algorithm in get_args(type(cfg).model_fields["algorithm"].annotation)
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


# -- one model per algorithm -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("algorithm", "model", "section"),
    [
        ("moss", MoSSRun, "encoder"),
        ("oracle", OracleRun, None),
        ("pearl", PearlRun, "pearl"),
        ("tcl", PearlRun, "pearl"),
        ("cocoa", PearlRun, "pearl"),
        ("gridfilter", GridFilterRun, "gridfilter"),
    ],
)
def test_the_algorithm_picks_the_run_model_and_its_own_section(algorithm: str, model: type, section: str | None) -> None:
    cfg = parse_config({"algorithm": algorithm, "env": {"id": "PointRobot"}})
    assert type(cfg) is model and cfg.algorithm == algorithm
    own = set(type(cfg).model_fields) - {"algorithm", "env", "seed", "sac", "train"}
    assert own == ({section} if section else set())
    assert model.model_validate({"algorithm": algorithm, "env": {"id": "PointRobot"}}) == cfg


def test_offline_algorithms_need_their_offline_section() -> None:
    raw = {"algorithm": "focal", "env": {"id": "PointRobot"}}
    with pytest.raises(ConfigError, match="offline: Field required"):
        parse_config(raw)
    cfg = parse_config({**raw, "offline": {"dataset": "d.npz"}})
    assert type(cfg) is FocalRun and cfg.offline.dataset == "d.npz" and cfg.focal == FocalConfig()


# -- removed options, the renamed algorithm, other algorithms' sections --------------------------------------
#: every option version 1 had that no longer exists, at the value at which it did nothing (its default)
V1_REMOVED: dict[str, dict[str, Any]] = {
    "encoder": {
        "policy_input": "belief",
        "head_hidden": [],
        "embed_hidden": [],
        "normalize": False,
        "cell": "gru",
        "reward_decoder": "mlp",
        "cluster_weight": 0.0,
        "agreement_weight": 0.0,
        "task_prediction_weight": 0.0,
    },
    "pearl": {"rl_context": "task"},
    "filter": {
        "jitter": False,
        "mode": False,
        "min_sigma": 0.0,
        "probes": 0,
        "coarse": [],
        "neighbourhood": 0.0,
        "neighbourhood_until": 0,
    },
    "train": {"encoder_until": None, "policy_updates_frozen": None},
}
#: the algorithm whose config holds each section today (the grid filter's was `filter:` in version 1)
OWNER = {"encoder": "moss", "pearl": "pearl", "gridfilter": "gridfilter", "train": "moss"}


def v1_stored_config(algorithm: str, **sections: dict[str, Any]) -> dict[str, Any]:
    """A resolved run config as version 1 stored it in checkpoints and run directories: every algorithm's
    section (the grid filter's as `filter:`) and `offline: null`, each section holding its removed options at
    their defaults; `sections` update entries of a section (e.g. filter={"grid": 5})."""

    def dump(model: Any) -> dict[str, Any]:
        return model.model_dump(mode="json")

    raw: dict[str, Any] = {
        "algorithm": algorithm,
        "env": dump(EnvConfig(id="PointRobot")),
        "seed": 0,
        "encoder": dump(EncoderConfig()),
        "pearl": dump(PearlConfig()),
        "focal": dump(FocalConfig()),
        "filter": dump(GridFilterConfig()),
        "offline": None,
        "sac": dump(SACConfig()),
        "train": dump(TrainConfig()),
    }
    for section, removed in V1_REMOVED.items():
        raw[section].update(removed)
    for section, values in sections.items():
        raw[section].update(values)
    return raw


@pytest.mark.parametrize("dotted", [f"{s if s != 'filter' else 'gridfilter'}.{k}" for s, keys in V1_REMOVED.items() for k in keys])
def test_a_config_naming_a_removed_option_is_refused_even_at_its_old_default(dotted: str) -> None:
    section, key = dotted.split(".")
    off = V1_REMOVED["filter" if section == "gridfilter" else section][key]
    raw = {"algorithm": OWNER[section], "env": {"id": "PointRobot"}, section: {key: off}}
    with pytest.raises(ConfigError) as exc:
        parse_config(raw, source="my.yaml")
    assert str(exc.value) == f"my.yaml: {dotted}: option removed"


@pytest.mark.parametrize(
    ("algorithm", "section", "key", "value"),
    [("moss", "encoder", "cell", "additive"), ("gridfilter", "gridfilter", "probes", 3), ("moss", "train", "encoder_until", 100)],
)
def test_a_config_file_setting_a_removed_option_is_refused_naming_it(tmp_path: Path, algorithm, section, key, value) -> None:
    p = write(tmp_path, {"algorithm": algorithm, "env": {"id": "PointRobot"}, section: {key: value}})
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    assert str(exc.value) == f"{p}: {section}.{key}: option removed"
    result = CliRunner().invoke(app, ["train", "--config", str(p), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and f"{section}.{key}: option removed" in result.stderr
    assert not (tmp_path / "run").exists()


def test_algorithm_filter_is_refused_naming_gridfilter(tmp_path: Path) -> None:
    for raw in (
        {"algorithm": "filter", "env": {"id": "PointRobot"}},
        {"algorithm": "filter", "env": {"id": "PointRobot"}, "filter": {"grid": 5}},
    ):
        with pytest.raises(ConfigError) as exc:
            parse_config(raw, source="my.yaml")
        msg = str(exc.value)
        assert msg.startswith("my.yaml: algorithm 'filter'") and "'gridfilter'" in msg and "`gridfilter:`" in msg
    p = write(tmp_path, {"algorithm": "filter", "env": {"id": "PointRobot"}})
    with pytest.raises(ConfigError, match="is now 'gridfilter'") as exc:
        load_config(p)
    assert str(p) in str(exc.value)
    # the old section name is refused, naming the new one
    with pytest.raises(ConfigError, match="filter: the section is now `gridfilter:`"):
        parse_config({"algorithm": "gridfilter", "env": {"id": "PointRobot"}, "filter": {"grid": 5}})


@pytest.mark.parametrize(
    ("algorithm", "section", "owners"),
    [
        ("moss", "gridfilter", "gridfilter"),
        ("oracle", "encoder", "moss"),
        ("oracle", "gridfilter", "gridfilter"),
        ("gridfilter", "encoder", "moss"),
        ("moss", "pearl", "cocoa, pearl, tcl"),
        ("tcl", "focal", "focal, focalpp"),
        ("pearl", "offline", "focal, focalpp"),
    ],
)
def test_a_section_of_another_algorithm_is_refused_naming_it(algorithm: str, section: str, owners: str) -> None:
    raw = {"algorithm": algorithm, "env": {"id": "PointRobot"}, section: {}}
    with pytest.raises(ConfigError) as exc:
        parse_config(raw, source="my.yaml")
    assert str(exc.value) == f"my.yaml: {section}: a section of {owners}, not of algorithm {algorithm!r}"


def test_focal_keeps_its_offline_section_but_not_the_encoders() -> None:
    raw = {"algorithm": "focalpp", "env": {"id": "PointRobot"}, "offline": {"dataset": "d.npz"}}
    assert parse_config(raw).offline.dataset == "d.npz"
    with pytest.raises(ConfigError, match="encoder: a section of moss, not of algorithm 'focalpp'"):
        parse_config({**raw, "encoder": {"latent_dim": 2}})


# -- stored configs (checkpoints, run directories) are migrated -------------------------------------------------
def test_a_version_1_stored_filter_config_migrates_to_gridfilter() -> None:
    raw = v1_stored_config("filter", filter={"grid": 5, "hidden": 16, "refine": 2}, train={"total_steps": 80})
    raw["encoder"]["cell"] = "additive"  # an unused section's removed option: dropped with the section
    before = yaml.safe_dump(raw)
    cfg = parse_config(raw, source="ck.pt", stored=True)
    assert yaml.safe_dump(raw) == before  # the caller's mapping is left as it was
    assert type(cfg) is GridFilterRun and cfg.algorithm == "gridfilter"
    assert cfg.gridfilter == GridFilterConfig(grid=5, hidden=16, refine=2)
    assert cfg.train == TrainConfig(total_steps=80) and cfg.sac == SACConfig()
    # today's form holds its own section only, and is a config a user may write
    dumped = cfg.model_dump(mode="json")
    assert set(dumped) == {"algorithm", "env", "seed", "sac", "train", "gridfilter"}
    assert parse_config(dumped) == cfg == parse_config(dumped, stored=True)
    with pytest.raises(ConfigError, match="is now 'gridfilter'"):
        parse_config(v1_stored_config("filter"))  # not as a user's config


# agents/config.py migrate_stored_config renames `filter:` only in a config of algorithm `filter`; in every
# other version-1 config the grid filter's section, stored under its old name, is kept and refused
@pytest.mark.parametrize("algorithm", ["moss", "oracle", "pearl", "tcl", "focal"])
def test_version_1_stored_configs_of_the_other_algorithms_load(algorithm: str) -> None:
    raw = v1_stored_config(algorithm)
    today: dict[str, Any] = {"algorithm": algorithm, "env": {"id": "PointRobot"}}
    if algorithm == "focal":
        raw["offline"] = today["offline"] = {"dataset": "d.npz"}
    assert parse_config(raw, stored=True) == parse_config(today)


@pytest.mark.parametrize(
    ("algorithm", "section", "key", "value", "dotted"),
    [
        ("moss", "encoder", "cell", "additive", "encoder.cell"),
        ("moss", "encoder", "head_hidden", [16], "encoder.head_hidden"),
        ("moss", "train", "encoder_until", 1000, "train.encoder_until"),
        ("filter", "filter", "probes", 3, "gridfilter.probes"),
        ("filter", "filter", "min_sigma", 0.1, "gridfilter.min_sigma"),
        ("tcl", "pearl", "rl_context", "crop", "pearl.rl_context"),
    ],
)
def test_a_stored_config_that_used_a_removed_option_is_refused_naming_it(algorithm, section, key, value, dotted) -> None:
    raw = v1_stored_config(algorithm, **{section: {key: value}})
    with pytest.raises(ConfigError) as exc:
        parse_config(raw, source="ck.pt", stored=True)
    msg = str(exc.value)
    assert msg.startswith(f"ck.pt: {dotted}: option removed") and repr(value) in msg


def test_a_removed_value_and_a_non_string_algorithm_are_refused_by_name() -> None:
    raw = {"algorithm": "moss", "env": {"id": "PointRobot"}, "encoder": {"decode": "task"}}
    with pytest.raises(ConfigError, match="encoder.decode: 'task' is no longer offered"):
        parse_config(raw, source="my.yaml")
    with pytest.raises(ConfigError, match="encoder.decode: 'task' is no longer offered; this run used it"):
        parse_config(raw, source="config.yaml", stored=True)
    for bad in (["moss"], {"name": "moss"}, None):
        with pytest.raises(ConfigError, match="algorithm: must be one of moss"):
            parse_config({"algorithm": bad, "env": {"id": "PointRobot"}})
        with pytest.raises(ConfigError, match="algorithm: must be one of moss"):
            parse_config({"algorithm": bad, "env": {"id": "PointRobot"}}, stored=True)
