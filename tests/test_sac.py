"""The SAC core: the batched twin critic is exactly two MLPs, and old two-MLP critic weights load into it."""

from __future__ import annotations

import copy

import torch

from agents.config import SACConfig
from agents.parts.nets import MLP
from agents.parts.sac import SAC
from agents.parts.sac_nets import TanhGaussianActor, TwinQ


def test_twin_critic_is_two_mlps_drawn_in_turn_and_loads_their_weights() -> None:
    torch.manual_seed(3)
    critic = TwinQ(5, 2, (16, 8))
    torch.manual_seed(3)
    q1, q2 = MLP(7, (16, 8), 1), MLP(7, (16, 8), 1)
    x, a = torch.randn(4, 6, 5), torch.randn(4, 6, 2)
    out = critic(x, a)
    assert out.shape == (2, 4, 6, 1)
    xa = torch.cat([x, a], -1)
    torch.testing.assert_close(out[0], q1(xa))
    torch.testing.assert_close(out[1], q2(xa))
    # a state dict of the two-MLP layout (what older runs saved for resuming) loads and gives the same numbers
    for net in (q1, q2):
        for p in net.parameters():
            p.data.normal_()
    fresh = TwinQ(5, 2, (16, 8))
    fresh.load_state_dict({**{f"q1.{k}": v for k, v in q1.state_dict().items()}, **{f"q2.{k}": v for k, v in q2.state_dict().items()}})
    torch.testing.assert_close(fresh(x, a)[0], q1(xa))
    torch.testing.assert_close(fresh(x, a)[1], q2(xa))


def test_update_leaves_metrics_on_the_device_and_the_actor_step_leaves_the_critic_alone() -> None:
    torch.manual_seed(0)
    sac = SAC(TanhGaussianActor(4, 2, (16,)), 4, 2, SACConfig(hidden=(16,), auto_alpha=True))
    batch = (torch.randn(32, 4), torch.rand(32, 2) * 2 - 1, torch.randn(32, 1), torch.randn(32, 4), torch.zeros(32, 1))
    ref, target0 = copy.deepcopy(sac), [p.clone() for p in sac.critic_target.parameters()]
    torch.manual_seed(5)
    m = sac.update(*batch)
    assert all(isinstance(v, torch.Tensor) and v.dim() == 0 and not v.requires_grad for v in m.values())
    # the critic's gradients are those of its own loss: the actor's loss added none
    torch.manual_seed(5)
    loss, _ = ref.critic_loss(*batch)
    loss.backward()
    for p, q in zip(sac.critic.parameters(), ref.critic.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad)
        assert p.requires_grad
    moved = [(t - t0).abs().max() for t, t0 in zip(sac.critic_target.parameters(), target0, strict=True)]
    assert all(0 < d < 0.01 for d in moved)  # Polyak: the target moved, by tau of the way


def test_training_state_of_the_two_mlp_critic_resumes_with_its_adam_moments() -> None:
    """A run saved with the two-MLP critic (q1, q2 Sequentials, one Adam over q1's then q2's parameters)
    resumes: after loading, the same loss steps TwinQ exactly as it would have stepped the two MLPs."""
    torch.manual_seed(1)
    old = torch.nn.ModuleDict({"q1": MLP(6, (8, 8), 1), "q2": MLP(6, (8, 8), 1)})
    old_opt = torch.optim.Adam(old.parameters(), lr=1e-2)
    xa = torch.randn(16, 6)

    def old_step() -> None:
        old_opt.zero_grad()
        (old["q1"](xa).square().sum() + 2 * old["q2"](xa).sum()).backward()
        old_opt.step()

    old_step()
    old_step()
    sac = SAC(TanhGaussianActor(4, 2, (8, 8)), 4, 2, SACConfig(hidden=(8, 8)))
    sd = sac.state_dict()
    sac.load_state_dict({**sd, "critic": old.state_dict(), "critic_target": old.state_dict(), "critic_opt": old_opt.state_dict()})
    old_step()
    sac.critic_opt.zero_grad()
    q = sac.critic(xa[:, :4], xa[:, 4:])
    (q[0].square().sum() + 2 * q[1].sum()).backward()
    sac.critic_opt.step()
    for k, net in enumerate((old["q1"], old["q2"])):
        torch.testing.assert_close(sac.critic(xa[:, :4], xa[:, 4:])[k], net(xa))
