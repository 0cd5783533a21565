"""Checkpoint files: a round trip acts identically; every kind of bad file gets a CheckpointError saying why."""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import pytest
import structlog
import torch
from test_config import v1_stored_config
from typer.testing import CliRunner

from agents.checkpoint import VERSION, CheckpointError, build_policy, load_checkpoint, save_checkpoint
from agents.config import parse_config
from agents.policies import GridFilterPolicy, MoSSPolicy, OraclePolicy, Spaces
from runtime.cli import app

torch.set_num_threads(1)

ENV = {
    "id": "PointRobot",
    "obs_dim": 2,
    "action_dim": 2,
    "action_low": [-0.1, -0.1],
    "action_high": [0.1, 0.1],
}


@pytest.fixture(autouse=True)
def _restore_logging():
    """The CLI points structlog at CliRunner's (then closed) stderr; put the defaults back afterwards."""
    yield
    structlog.reset_defaults()


def moss_config() -> dict:
    raw = {
        "algorithm": "moss",
        "env": {"id": "PointRobot"},
        "encoder": {
            "latent_dim": 3,
            "n_components": 2,
            "embed_dim": 8,
            "hidden_dim": 12,
            "include_probs": True,
        },
        "sac": {"hidden": [16, 16]},
    }
    return parse_config(raw).model_dump(mode="json")


def make_moss() -> MoSSPolicy:
    torch.manual_seed(0)
    return MoSSPolicy(Spaces(2, 2, [-0.1, -0.1], [0.1, 0.1]), 3, 2, 8, 12, (16, 16), True)


@pytest.fixture
def saved(tmp_path: Path) -> tuple[MoSSPolicy, Path]:
    policy = make_moss()
    path = save_checkpoint(tmp_path / "moss.pt", policy, moss_config(), ENV, {"env_steps": 123}, None)
    return policy, path


@torch.no_grad()
def rollout(policy, seed: int = 4, n: int = 4, steps: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    state = policy.init_state(n)
    obs = torch.rand(n, 2, generator=g) * 2 - 1
    beliefs, actions = [], []
    for _ in range(steps):
        b = policy.belief(state)
        a = policy.act(obs, b, deterministic=True)
        obs2 = obs + a
        state = policy.update(state, obs, a, -obs2.norm(dim=-1), obs2)
        beliefs.append(b)
        actions.append(a)
        obs = obs2
    return torch.stack(beliefs), torch.stack(actions)


# -- round trip ----------------------------------------------------------------------------------------------
def test_round_trip_gives_identical_actions(saved) -> None:
    policy, path = saved
    ck = load_checkpoint(path)
    assert ck.algorithm == "moss" and ck.version == VERSION and ck.env == ENV
    assert ck.config == moss_config() and ck.stats == {"env_steps": 123} and ck.training is None
    assert ck.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    loaded = build_policy(ck)
    assert isinstance(loaded, MoSSPolicy) and not loaded.training
    assert loaded.spec() == policy.spec()
    b0, a0 = rollout(policy)
    b1, a1 = rollout(loaded)
    assert torch.equal(a0, a1) and torch.equal(b0, b1)
    assert not any(p.name.endswith(".tmp") for p in path.parent.iterdir())  # the atomic save cleaned up


def test_round_trip_oracle_with_training_state(tmp_path: Path) -> None:
    torch.manual_seed(1)
    policy = OraclePolicy(Spaces(2, 2, [-0.1, -0.1], [0.1, 0.1]), task_dim=2, actor_hidden=(16,))
    training = {"step": 7, "numpy_rng": json.dumps({"a": 1}), "torch_rng": torch.get_rng_state()}
    path = save_checkpoint(tmp_path / "o.pt", policy, {"algorithm": "oracle"}, ENV, {}, training)
    ck = load_checkpoint(path)
    assert ck.summary()["resumable"] and ck.training["step"] == 7
    assert torch.equal(ck.training["torch_rng"], training["torch_rng"])
    loaded = build_policy(ck)
    obs, tv = torch.randn(5, 2), torch.randn(5, 2)
    assert torch.equal(policy.act(obs, tv), loaded.act(obs, tv))


# -- bad files -----------------------------------------------------------------------------------------------
def expect_error(path: Path, *phrases: str) -> str:
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path)
    msg = str(exc.value)
    for p in phrases:
        assert p in msg, msg
    assert "\n" not in msg, msg  # one clear line, not a traceback-sized essay
    return msg


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5, 0.9, 0.999])
def test_truncated_file(saved, fraction: float) -> None:
    _, path = saved
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    expect_error(path, str(path), "truncated")


def test_foreign_torch_file(tmp_path: Path) -> None:
    path = tmp_path / "foreign.pt"
    torch.save({"a": 1}, path)
    expect_error(path, "foreign", "format tag")
    torch.save(torch.zeros(3), path)
    expect_error(path, "foreign")


def test_non_torch_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.pt"
    path.write_text("hello, I am not a checkpoint\n")
    expect_error(path, "not a torch file")
    path.write_bytes(pickle.dumps({"a": [1, 2]}))
    expect_error(path, "not a torch file")


def test_newer_version(saved) -> None:
    _, path = saved
    raw = torch.load(path, weights_only=True)
    raw["version"] = VERSION + 1
    torch.save(raw, path)
    expect_error(path, f"version {VERSION + 1}", "newer")


def test_missing_version_is_not_called_newer(saved) -> None:
    _, path = saved
    raw = torch.load(path, weights_only=True)
    del raw["version"]
    torch.save(raw, path)
    msg = expect_error(path, "version")
    assert "newer" not in msg


def test_missing_file(tmp_path: Path) -> None:
    expect_error(tmp_path / "nope.pt", "not found", "nope.pt")


class Payload:
    """Anything that is not tensors and plain containers: unpickling it could run code."""

    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickled_object_is_refused(tmp_path: Path, capsys) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"format": "metarl-checkpoint", "version": 1, "x": Payload()}, path)
    expect_error(path, "refused", "objects other than tensors")
    assert "this must never run" not in capsys.readouterr().out


def test_damaged_and_unknown_algorithm(saved) -> None:
    _, path = saved
    raw = torch.load(path, weights_only=True)
    torch.save({**raw, "algorithm": "ppo"}, path)
    expect_error(path, "unknown algorithm", "ppo")
    torch.save({k: v for k, v in raw.items() if k != "policy"}, path)
    expect_error(path, "missing", "policy")


def test_weights_not_matching_spec(saved) -> None:
    _, path = saved
    raw = torch.load(path, weights_only=True)
    raw["policy_spec"]["hidden_dim"] = 13
    torch.save(raw, path)
    with pytest.raises(CheckpointError, match="do not match its spec"):
        build_policy(load_checkpoint(path))


# -- runtime inspect -----------------------------------------------------------------------------------------
def test_cli_inspect_json(saved) -> None:
    policy, path = saved
    result = CliRunner().invoke(app, ["inspect", str(path), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["algorithm"] == "moss" and out["env"]["id"] == "PointRobot"
    assert out["policy_parameters"] == sum(p.numel() for p in policy.state_dict().values())
    assert out["resumable"] is False and out["version"] == VERSION


def test_cli_inspect_bad_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.pt"
    path.write_text("garbage")
    result = CliRunner().invoke(app, ["inspect", str(path)])
    assert result.exit_code == 2
    assert "bad.pt" in result.stderr and "not a torch file" in result.stderr


ASSETS = Path(__file__).parents[1] / "runtime" / "assets"


@pytest.mark.parametrize("name, algorithm", [("moss_point_robot_ns.pt", "moss"), ("gridfilter_point_robot_ns.pt", "gridfilter")])
def test_bundled_checkpoints_load_and_act(name: str, algorithm: str) -> None:
    """The checkpoints tools/demo.sh serves (MoSS, then the grid filter) are policies for
    the non-stationary point robot, without training state."""
    ck = load_checkpoint(ASSETS / name)
    assert ck.algorithm == algorithm and ck.env["id"] == "PointRobot"
    assert ck.config["env"]["nonstationary"] == "periodic" and ck.training is None
    policy = build_policy(ck)
    state = policy.init_state(3)
    a = policy.act(torch.zeros(3, 2), policy.belief(state), deterministic=True)
    assert a.shape == (3, 2) and bool((a.abs() <= 0.1 + 1e-6).all())


def test_bundled_filter_adapts_on_test_goals() -> None:
    """The bundled filter is the trained one (score 0.9+ in docs/benchmarks.md): on 8 switching test episodes its
    mean return is far above the random policy's (~-120) and near the oracle's (~-22)."""
    from agents.config import EnvConfig
    from agents.evaluation import evaluation_episodes

    ck = load_checkpoint(ASSETS / "gridfilter_point_robot_ns.pt")
    records = evaluation_episodes(build_policy(ck), EnvConfig.model_validate(ck.config["env"]), episodes=8, parallel=8)
    assert sum(r.ret for r in records) / len(records) > -40


# -- version 1 files (before the grid filter was renamed gridfilter) ---------------------------------------
def write_v1(path: Path, algorithm: str, policy, config: dict, spec_extra: dict) -> Path:
    """A checkpoint as version 1 wrote it: save_checkpoint's payload with version 1, the v1 algorithm
    name, a v1 stored config and the v1 policy spec (today's plus the settings since removed)."""
    payload = {
        "format": "metarl-checkpoint",
        "version": 1,
        "algorithm": algorithm,
        "config": config,
        "env": ENV,
        "policy_spec": {**policy.spec(), **spec_extra},
        "policy": {k: v.detach().clone() for k, v in policy.state_dict().items()},
        "training": None,
        "stats": {"env_steps": 40},
        "created": "2026-01-01T00:00:00+00:00",
    }
    torch.save(payload, path)
    return path


V1_FILTER_SPEC = {"mode": False, "min_sigma": 0.0, "probes": 0}


def make_gridfilter(**kw) -> GridFilterPolicy:
    torch.manual_seed(0)
    return GridFilterPolicy(Spaces(2, 2, [-0.1, -0.1], [0.1, 0.1]), grid=5, hidden=16, actor_hidden=(16, 16), **kw).eval()


def test_version_1_filter_checkpoint_loads_as_gridfilter_and_acts_the_same(tmp_path: Path) -> None:
    policy = make_gridfilter(refine=2)
    config = v1_stored_config("filter", filter={"grid": 5, "hidden": 16, "refine": 2}, sac={"hidden": [16, 16]})
    path = write_v1(tmp_path / "v1.pt", "filter", policy, config, V1_FILTER_SPEC)
    ck = load_checkpoint(path)
    assert ck.algorithm == "gridfilter" and ck.version == 1
    assert not set(V1_FILTER_SPEC) & set(ck.policy_spec) and ck.policy_spec == policy.spec()
    assert ck.config["algorithm"] == "gridfilter" and "filter" not in ck.config and "encoder" not in ck.config
    cfg = parse_config(ck.config, str(path), stored=True)
    assert cfg.algorithm == "gridfilter" and cfg.gridfilter.grid == 5 and cfg.gridfilter.refine == 2
    loaded = build_policy(ck)
    assert isinstance(loaded, GridFilterPolicy) and loaded.filter.k == 81
    b0, a0 = rollout(policy)
    b1, a1 = rollout(loaded)
    assert torch.equal(a0, a1) and torch.equal(b0, b1)
    result = CliRunner().invoke(app, ["inspect", str(path), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["algorithm"] == "gridfilter" and out["version"] == 1


def test_version_1_moss_checkpoint_with_removed_settings_at_their_defaults_loads(tmp_path: Path) -> None:
    policy = make_moss()
    spec_extra = {"head_hidden": [], "acts_on": "belief", "embed_hidden": [], "normalize": False, "cell": "gru"}
    path = write_v1(tmp_path / "v1.pt", "moss", policy, v1_stored_config("moss"), spec_extra)
    ck = load_checkpoint(path)
    assert ck.algorithm == "moss" and ck.policy_spec == policy.spec()
    b0, a0 = rollout(policy)
    b1, a1 = rollout(build_policy(ck))
    assert torch.equal(a0, a1) and torch.equal(b0, b1)


def test_version_1_moss_checkpoint_config_is_brought_to_todays_form(tmp_path: Path) -> None:
    path = write_v1(tmp_path / "v1.pt", "moss", make_moss(), v1_stored_config("moss"), {})
    ck = load_checkpoint(path)
    assert set(ck.config) == {"algorithm", "env", "seed", "encoder", "sac", "train"}


@pytest.mark.parametrize(
    ("config_probes", "phrases"),
    [(0, ["gridfilter policy setting 'probes' was removed", "sets it to 3"]), (3, ["gridfilter policy setting 'probes' was removed", "sets it to 3"])],
)
def test_version_1_filter_checkpoint_that_used_probes_is_refused(tmp_path: Path, config_probes: int, phrases: list[str]) -> None:
    """Its spec (or also its config, as a run with probes stored both) sets a removed setting: refused, named."""
    config = v1_stored_config("filter", filter={"grid": 5, "hidden": 16, "probes": config_probes})
    path = write_v1(tmp_path / "v1.pt", "filter", make_gridfilter(), config, {**V1_FILTER_SPEC, "probes": 3})
    expect_error(path, str(path), "probes", *phrases)


def test_version_1_checkpoint_that_used_a_training_only_option_still_acts(tmp_path: Path) -> None:
    """A removed option that only shaped training (freezing the encoder, a coarse-to-fine schedule, the
    paper-free decode target) leaves the policy intact: the checkpoint loads, its config in today's form."""
    config = v1_stored_config("filter", filter={"grid": 5, "hidden": 16, "coarse": [[2, 40]]})
    config["train"]["encoder_until"] = 1000
    config["encoder"]["decode"] = "task"
    path = write_v1(tmp_path / "v1.pt", "filter", make_gridfilter(), config, V1_FILTER_SPEC)
    ck = load_checkpoint(path)
    assert "encoder_until" not in ck.config["train"] and "coarse" not in ck.config["gridfilter"]
    assert build_policy(ck).belief_dim == 4


@pytest.mark.parametrize(("key", "value"), [("mode", True), ("min_sigma", 0.1)])
def test_version_1_filter_spec_with_another_removed_setting_on_is_refused(tmp_path: Path, key: str, value) -> None:
    path = write_v1(tmp_path / "v1.pt", "filter", make_gridfilter(), v1_stored_config("filter"), {**V1_FILTER_SPEC, key: value})
    expect_error(path, f"setting {key!r} was removed", repr(value))
