"""tools/studies/belief_error_study.py: the imperfect oracle shows the prior, then the noisy segment target, on time."""

import importlib.util
from pathlib import Path

import pytest
import torch

from agents.policies import Spaces

pytestmark = pytest.mark.slow  # a study of tools/studies/: not in the default tier

SPEC = importlib.util.spec_from_file_location(
    "belief_error_study", Path(__file__).resolve().parents[1] / "tools" / "studies" / "belief_error_study.py"
)
study = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(study)


def shown(policy, vectors: list[list[float]]) -> list[torch.Tensor]:
    state, out = policy.init_state(1), []
    for v in vectors:  # one call at reset, then one after every step, as run_episodes makes them
        state = policy.set_task_vector(state, torch.tensor([v]))
        out.append(policy.belief(state)[0].clone())
    return out


def test_imperfect_oracle_is_late_by_delay_steps_and_holds_its_noise_per_segment() -> None:
    torch.manual_seed(0)
    prior = torch.tensor([0.1, -0.2])
    late = study.ImperfectOracle(Spaces(2, 2, [-0.1, -0.1], [0.1, 0.1]), task_dim=2, sigma=0.3, delay=2, prior=prior)
    g1, g2 = [0.5, 0.5], [-0.7, 0.2]
    seen = shown(late, [g1] * 4 + [g2] * 4)
    assert torch.equal(seen[0], prior) and torch.equal(seen[1], prior)  # the episode's start: the prior mean
    first = seen[2]
    assert not torch.allclose(first, torch.tensor(g1)) and (first - torch.tensor(g1)).abs().max() < 1.5
    assert torch.equal(seen[3], first)  # the noise is drawn once per segment
    assert torch.equal(seen[4], first) and torch.equal(seen[5], first)  # 2 steps late after the switch
    assert not torch.equal(seen[6], first) and torch.equal(seen[7], seen[6])
    exact = study.ImperfectOracle(Spaces(2, 2, [-0.1, -0.1], [0.1, 0.1]), task_dim=2)
    assert all(torch.equal(s, torch.tensor(v)) for s, v in zip(shown(exact, [g1, g1, g2]), [g1, g1, g2], strict=True))


def test_read_task_oracle_shows_the_sign_the_agents_belief_reads_and_ignores_the_true_task() -> None:
    from agents.parts.readout import TaskReadout
    from agents.policies import MoSSPolicy

    torch.manual_seed(0)
    spaces = Spaces(3, 2, [-1.0, -1.0], [1.0, 1.0])
    agent = MoSSPolicy(spaces, latent_dim=2, embed_dim=8, hidden_dim=8, actor_hidden=(8,))
    readout = TaskReadout(agent.belief_dim, 1, hidden=(8,))
    readout.out_mean.fill_(-5.0)  # it reads "backwards" (-1) whatever the belief
    read = study.ReadTaskOracle(spaces, task_dim=1, actor_hidden=(8,), agent=agent, readout=readout, direction=True)
    state, reference = read.init_state(4), agent.init_state(4)
    for _ in range(6):
        s, a, r, s2 = torch.randn(4, 3), torch.rand(4, 2) * 2 - 1, torch.randn(4), torch.randn(4, 3)
        state = read.set_task_vector(read.update(state, s, a, r, s2), torch.ones(4, 1))  # the truth says +1
        reference = agent.update(reference, s, a, r, s2)
        expected = torch.sign(readout(agent.belief(reference)))
        assert torch.equal(read.belief(state), expected)
        assert torch.equal(state["h"], reference["h"])  # the agent's own state, updated by the same transitions
        assert (read.belief(state) == -1).all()  # the read, not the true +1
    raw = study.ReadTaskOracle(spaces, task_dim=1, actor_hidden=(8,), agent=agent, readout=readout, direction=False)
    assert torch.equal(raw.belief(raw.init_state(2)), readout(agent.belief(agent.init_state(2))))  # continuous tasks: unsnapped
