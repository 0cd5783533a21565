"""The task readout: fitted on the right pairs, stored in checkpoints, replayed, and refused when damaged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from agents.checkpoint import CheckpointError, build_readout, load_checkpoint, save_checkpoint, store_readout
from agents.evaluation.readout import fit_readout
from agents.parts.readout import TaskReadout
from agents.policies import AgentPolicy, Spaces, State, beliefs_along


class RewardEcho(AgentPolicy):
    """A belief that is a fixed nonlinear map of the last reward: (r, r^3). The fit must pair the belief
    after transition t with the task of transition t to read the task back."""

    algorithm = "echo"

    def __init__(self, spaces: Spaces) -> None:
        super().__init__(spaces, {})

    @property
    def belief_dim(self) -> int:
        return 2

    def init_state(self, n: int) -> State:
        return {"b": torch.zeros(n, 2)}

    def update(self, state: State, s, a, r, s2) -> State:
        r = r.reshape(-1)
        return {"b": torch.stack([r, r**3], -1)}

    def belief(self, state: State) -> torch.Tensor:
        return state["b"]


def episodes(n: int = 24, T: int = 30, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """n episodes whose task changes every step (uniform in [-1, 1]) and whose reward is the task."""
    g = torch.Generator().manual_seed(seed)
    task = torch.rand(n, T, 1, generator=g) * 2 - 1
    lengths = torch.randint(T // 2, T + 1, (n,), generator=g)
    z = torch.zeros(n, T, 2)
    return z, z, task[..., 0].clone(), z, lengths, task


def test_beliefs_along_runs_the_contract_and_holds_the_last_belief_past_the_end() -> None:
    pol = RewardEcho(Spaces(2, 2, [-1.0, -1.0], [1.0, 1.0]))
    s, a, r, s2, lengths, _ = episodes(4, 10)
    b = beliefs_along(pol, s, a, r, s2, lengths)
    assert b.shape == (4, 11, 2) and torch.equal(b[:, 0], torch.zeros(4, 2))
    for j in range(4):
        L = int(lengths[j])
        assert torch.allclose(b[j, 1 : L + 1, 0], r[j, :L])
        assert torch.equal(b[j, L + 1 :], b[j, L].expand(10 - L, 2))


def test_fit_reads_the_task_of_the_transition_the_belief_has_seen() -> None:
    pol = RewardEcho(Spaces(2, 2, [-1.0, -1.0], [1.0, 1.0]))
    rng = torch.get_rng_state()
    readout, q = fit_readout(pol, *episodes(), seed=0, steps=300)
    assert torch.equal(rng, torch.get_rng_state())  # training's RNG stream is not disturbed
    assert q["held_out"] == 6 and q["episodes"] == 18
    assert q["r2"] > 0.99 and q["rmse"][0] < 0.06  # one step off, the tasks are independent: R^2 ~ 0
    x = torch.tensor([[0.5, 0.125], [-0.8, -0.512]])
    assert torch.allclose(readout(x), torch.tensor([[0.5], [-0.8]]), atol=0.08)
    again, q2 = fit_readout(pol, *episodes(), seed=0, steps=300)
    assert q2 == q and torch.equal(again(x), readout(x))


def test_multi_task_families_get_base_task_probabilities() -> None:
    pol = RewardEcho(Spaces(2, 2, [-1.0, -1.0], [1.0, 1.0]))
    s, a, _, s2, lengths, _ = episodes()
    base = torch.randint(0, 3, s.shape[:2], generator=torch.Generator().manual_seed(1))
    reward = base.float() - 1  # -1, 0, 1: the belief tells the base
    tv = torch.cat([torch.nn.functional.one_hot(base, 3).float(), torch.rand(*base.shape, 1)], -1)
    readout, q = fit_readout(pol, s, a, reward, s2, lengths, tv, bases=("run", "jump", "flip"), steps=400)
    assert readout.kind == "base_task" and readout.names == ["run", "jump", "flip"]
    assert q["accuracy"] == 1.0
    p = readout(torch.tensor([[1.0, 1.0]]))
    assert p.shape == (1, 3) and float(p.sum()) == pytest.approx(1.0) and int(p.argmax()) == 2


def test_checkpoints_store_the_readout_and_load_without_one(tmp_path: Path) -> None:
    pol = RewardEcho(Spaces(2, 2, [-1.0, -1.0], [1.0, 1.0]))
    readout, q = fit_readout(pol, *episodes(), steps=50)
    from serving_helpers import make_checkpoint

    path = make_checkpoint(tmp_path / "moss.pt")
    ck = load_checkpoint(path)
    assert ck.readout is None and build_readout(ck) is None and ck.summary()["readout"] is None
    # a readout fitted for a 2-d belief stored in a checkpoint: same outputs after loading
    store_readout(ck, readout.record(q))
    again = load_checkpoint(path)
    assert again.policy_state.keys() == ck.policy_state.keys() and again.sha256 != ck.sha256
    for k, v in ck.policy_state.items():
        assert torch.equal(again.policy_state[k], v)
    x = torch.randn(5, 2)
    assert torch.equal(build_readout(again)(x), readout(x))
    assert again.summary()["readout"] == {"spec": readout.spec(), "quality": q}
    # damaged: weights of the wrong shape are refused naming the readout
    rec = readout.record(q)
    rec["state"]["net.0.weight"] = torch.zeros(3, 3)
    store_readout(again, rec)
    with pytest.raises(CheckpointError, match="damaged task readout"):
        build_readout(load_checkpoint(path))


def test_save_checkpoint_writes_the_readout(tmp_path: Path) -> None:
    from agents.policies import MoSSPolicy

    readout = TaskReadout(8, 2)
    readout.out_mean.fill_(3.0)
    moss = MoSSPolicy(Spaces(2, 2, [-1.0, -1.0], [1.0, 1.0]))
    save_checkpoint(tmp_path / "p.pt", moss, {"algorithm": "moss"}, {"id": "PointRobot"}, {}, None, readout.record({"r2": 0.5}))
    ck = load_checkpoint(tmp_path / "p.pt")
    loaded = build_readout(ck)
    assert ck.readout["quality"] == {"r2": 0.5} and not any(p.requires_grad for p in loaded.parameters())
    x = torch.randn(4, 8)
    np.testing.assert_array_equal(loaded(x).numpy(), readout(x).detach().numpy())
