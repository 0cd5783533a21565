"""`runtime eval --protocol zero-shot | pearl`."""

from __future__ import annotations

import json

import pytest
import torch
from serving_helpers import make_checkpoint
from typer.testing import CliRunner

from runtime.cli import app

runner = CliRunner()
ZERO_SHOT_KEYS = {
    "checkpoint",
    "algorithm",
    "env",
    "episodes",
    "mean_return",
    "std_return",
    "per_task_return",
    "switches",
    "split",
}


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    d = tmp_path_factory.mktemp("eval")
    return {a: make_checkpoint(d / f"{a}.pt", algorithm=a, seed=3) for a in ("moss", "pearl", "oracle")}


def run_json(*args: str) -> dict:
    res = runner.invoke(app, ["eval", *args, "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.output.strip().splitlines()[-1])


def test_zero_shot_is_the_default_and_unchanged(ckpts):
    default = run_json("--checkpoint", str(ckpts["moss"]), "--episodes", "4")
    explicit = run_json("--checkpoint", str(ckpts["moss"]), "--episodes", "4", "--protocol", "zero-shot")
    assert set(default) == ZERO_SHOT_KEYS
    assert default == explicit


@pytest.mark.parametrize("algorithm", ["moss", "pearl"])
def test_pearl_protocol_reports_the_last_episode_and_every_episode_mean(ckpts, algorithm):
    ck = str(ckpts[algorithm])
    out = run_json(
        "--checkpoint", ck, "--episodes", "4", "--protocol", "pearl", "--reference", str(ckpts["oracle"])
    )
    assert out["protocol"] == "pearl" and out["exploration"] == 2 and out["posterior"] == 1
    assert out["episodes"] == 4 and len(out["per_episode_return"]) == 3
    assert out["mean_return"] == pytest.approx(out["per_episode_return"][-1])
    assert {"oracle_return", "random_return", "normalised_score"} <= set(out)
    if algorithm == "moss":
        # an agent without a separate exploration phase, one episode per trial: the zero-shot evaluation of
        # the stationary tasks (a PEARL policy would hold its prior for the whole episode instead)
        one = run_json("--checkpoint", ck, "--episodes", "4", "--protocol", "pearl", "--exploration", "0")
        zs = run_json("--checkpoint", ck, "--episodes", "4", "--nonstationary", "none")
        assert one["per_episode_return"] == [pytest.approx(zs["mean_return"])]


def test_pearl_protocol_text_output(ckpts):
    res = runner.invoke(
        app,
        [
            "eval",
            "--checkpoint",
            str(ckpts["moss"]),
            "--episodes",
            "2",
            "--protocol",
            "pearl",
            "--posterior",
            "2",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "per_episode_return" in res.output and "protocol: pearl" in res.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--protocol", "pearls"], "--protocol must be zero-shot, pearl or context"),
        (["--protocol", "pearl", "--posterior", "0"], "--posterior >= 1"),
        (["--protocol", "pearl", "--nonstationary", "periodic"], "stationary tasks"),
    ],
)
def test_protocol_errors(ckpts, args, message):
    res = runner.invoke(app, ["eval", "--checkpoint", str(ckpts["moss"]), *args])
    assert res.exit_code == 2 and message in res.output, res.output


def test_zero_shot_reference_scores_the_oracle_against_itself_as_one_with_no_delay(ckpts):
    """--reference: the oracle against itself scores exactly 1 and settles at once after every switch; an
    untrained MoSS policy gets a score and a delay from the same comparison."""
    args = ("--episodes", "6", "--reference", str(ckpts["oracle"]), "--nonstationary", "periodic")
    same = run_json("--checkpoint", str(ckpts["oracle"]), *args)
    assert same["normalised_score"] == pytest.approx(1.0) and same["oracle_return"] == same["mean_return"]
    assert same["adaptation_delay"]["switches"] == same["switches"] > 0
    assert same["adaptation_delay"]["median"] == 0 and same["adaptation_delay"]["mean"] == 0
    other = run_json("--checkpoint", str(ckpts["moss"]), *args)
    assert other["random_return"] == same["random_return"] and other["oracle_return"] == same["oracle_return"]
    expected = (other["mean_return"] - other["random_return"]) / (other["oracle_return"] - other["random_return"])
    assert other["normalised_score"] == pytest.approx(expected)
    assert other["adaptation_delay"]["switches"] == other["switches"]


def test_repeated_reference_pools_the_oracles_returns(ckpts):
    """--reference twice: the score is taken against the mean of both references' returns, each listed."""
    args = ("--checkpoint", str(ckpts["moss"]), "--episodes", "3", "--nonstationary", "periodic")
    one = run_json(*args, "--reference", str(ckpts["oracle"]))
    both = run_json(*args, "--reference", str(ckpts["oracle"]), "--reference", str(ckpts["moss"]))
    assert both["oracle_returns"] == pytest.approx([one["oracle_return"], one["mean_return"]])
    assert both["oracle_return"] == pytest.approx((one["oracle_return"] + one["mean_return"]) / 2)
    expected = (both["mean_return"] - both["random_return"]) / (both["oracle_return"] - both["random_return"])
    assert both["normalised_score"] == pytest.approx(expected) and both["random_return"] == one["random_return"]


def test_policy_set_changes_an_acting_setting_and_refuses_what_it_cannot(tmp_path):
    """--policy-set refine=2 evaluates a filter checkpoint on a finer acting grid: the same weights, other
    beliefs, so other returns; an unknown setting, a bad value or a shape change ends with a message."""
    ck = str(make_checkpoint(tmp_path / "gridfilter.pt", algorithm="gridfilter", seed=1))
    args = ("--checkpoint", ck, "--episodes", "3")
    plain, fine = run_json(*args), run_json(*args, "--policy-set", "refine=2")
    assert "policy_set" not in plain and fine["policy_set"] == {"refine": 2}
    assert fine["mean_return"] != pytest.approx(plain["mean_return"], abs=1e-6)
    assert run_json(*args, "--policy-set", "refine=1")["mean_return"] == pytest.approx(plain["mean_return"])
    raw = torch.load(ck, weights_only=True)
    del raw["policy_spec"]["refine"]  # a checkpoint from before the setting existed takes it too
    torch.save(raw, ck)
    assert run_json(*args, "--policy-set", "refine=2")["mean_return"] == pytest.approx(fine["mean_return"])
    for bad, message in (
        ("refine", "--policy-set expects KEY=VALUE"),
        ("refin=2", "no setting ['refin']"),
        ("refine=0", "refine >= 1"),
        ("hidden=8", "do not match its spec"),
    ):
        res = runner.invoke(app, ["eval", *args, "--policy-set", bad])
        assert res.exit_code == 2 and message in res.output, (bad, res.output)
