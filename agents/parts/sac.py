"""Soft actor-critic learning (twin critics, Polyak targets, fixed or tuned temperature).

The actor is owned by the policy (what serving needs); this module holds everything else.
Inputs are pre-built: x = the policy input (e.g. concat(obs, belief)), actions normalised to [-1, 1].
The critics and the temperature live on the actor's device (drawn on the CPU, as every part's initial
weights are, so a seed starts the same networks on any device).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from agents.config import SACConfig
from agents.parts.contrastive import ema_update
from agents.parts.sac_nets import TanhGaussianActor, TwinQ


class SAC:
    """SAC updates for `actor` on batches (x, a, r, x2, done)."""

    def __init__(self, actor: TanhGaussianActor, in_dim: int, action_dim: int, cfg: SACConfig) -> None:
        self.cfg = cfg
        self.actor = actor
        device = next(actor.parameters()).device
        self.critic = TwinQ(in_dim, action_dim, cfg.hidden).to(device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        # fused: one kernel for every parameter's Adam step (measured faster on the CPU too)
        self.actor_opt = torch.optim.Adam(actor.parameters(), lr=cfg.lr, fused=True)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=cfg.lr, fused=True)
        self.log_alpha = nn.Parameter(torch.tensor(float(cfg.alpha), device="cpu").log().to(device))
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=cfg.lr)
        self.target_entropy = cfg.target_entropy if cfg.target_entropy is not None else -float(action_dim)

    @property
    def alpha(self) -> torch.Tensor:
        return self.log_alpha.exp().detach()

    def critic_loss(self, x, a, r, x2, done) -> tuple[torch.Tensor, torch.Tensor]:
        """Twin-Q TD loss and Q1 [B, 1]. The target carries no gradient; the loss reaches whatever x was built from."""
        cfg = self.cfg
        with torch.no_grad():
            a2, logp2 = self.actor.sample(x2)
            q1t, q2t = self.critic_target(x2, a2)
            target = cfg.reward_scale * r + cfg.gamma * (1 - done) * (torch.min(q1t, q2t) - self.alpha * logp2)
        q = self.critic(x, a)  # [2, B, 1]
        return (q - target).square().mean((1, 2)).sum(), q[0]

    def update(
        self,
        x,
        a,
        r,
        x2,
        done,
        encoder_loss: torch.Tensor | None = None,
        encoder_opt: torch.optim.Optimizer | None = None,
        actor_penalty: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """One critic + actor (+ temperature) step; r, done [B, 1]. Returns scalar metrics as 0-d tensors
        (detached, on the update's device: reading them is left to the caller, once per epoch).

        PEARL-style learners build x from an encoder *with* gradient and pass that encoder's optimiser as
        `encoder_opt` (and its own terms, e.g. the KL bottleneck, as `encoder_loss`): the critic loss plus
        `encoder_loss` is back-propagated once, and the critic and the encoder step together (the CoCOA paper,
        eqs. 3.6-3.7). The actor and the temperature always see x detached (sg(z) in eq. 3.8). Without
        them (MoSS, the oracle) x carries no gradient and this is plain SAC. `actor_penalty(x, a_pi)` [B, 1]
        is added to the actor's loss (BRAC's divergence penalty, agents/parts/brac.py).
        """
        cfg = self.cfg
        critic_loss, q1 = self.critic_loss(x, a, r, x2, done)
        self.critic_opt.zero_grad(set_to_none=True)
        if encoder_opt is not None:
            encoder_opt.zero_grad(set_to_none=True)
        (critic_loss if encoder_loss is None else critic_loss + encoder_loss).backward()
        self._clip(self.critic)
        self.critic_opt.step()
        if encoder_opt is not None:
            if cfg.max_grad_norm:
                params = [p for g in encoder_opt.param_groups for p in g["params"]]
                nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            encoder_opt.step()

        x = x.detach()
        a_pi, logp = self.actor.sample(x)
        self.critic.requires_grad_(False)  # the actor's loss needs no critic gradients
        q_pi = self.critic(x, a_pi).min(0).values
        self.critic.requires_grad_(True)
        actor_loss = (self.alpha * logp - q_pi).mean()
        if actor_penalty is not None:
            actor_loss = actor_loss + actor_penalty(x, a_pi).mean()
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
        self._clip(self.actor)
        self.actor_opt.step()

        if cfg.auto_alpha:
            alpha_loss = -(self.log_alpha * (logp.detach() + self.target_entropy)).mean()
            self.alpha_opt.zero_grad(set_to_none=True)
            alpha_loss.backward()
            self.alpha_opt.step()
        ema_update(self.critic_target, self.critic, cfg.tau)
        return {"critic_loss": critic_loss.detach(), "actor_loss": actor_loss.detach(), "alpha": self.alpha, "q": q1.mean().detach()}

    def _clip(self, module: nn.Module) -> None:
        if self.cfg.max_grad_norm:
            nn.utils.clip_grad_norm_(module.parameters(), self.cfg.max_grad_norm)

    def state_dict(self) -> dict:
        return {
            "critic": self.critic.state_dict(),
            "critic_target": self.critic_target.state_dict(),
            "actor_opt": self.actor_opt.state_dict(),
            "critic_opt": self.critic_opt.state_dict(),
            "log_alpha": self.log_alpha.detach().clone(),
            "alpha_opt": self.alpha_opt.state_dict(),
        }

    def load_state_dict(self, sd: dict) -> None:
        critic_opt = sd["critic_opt"]
        if "q1.0.weight" in sd["critic"]:  # saved with the two-MLP critic: its Adam moments, stacked as TwinQ's
            critic_opt = _stacked_critic_adam(critic_opt, len(self.critic.weights))
        self.critic.load_state_dict(sd["critic"])
        self.critic_target.load_state_dict(sd["critic_target"])
        self.actor_opt.load_state_dict(sd["actor_opt"])
        self.critic_opt.load_state_dict(critic_opt)
        for opt in (self.actor_opt, self.critic_opt):  # an older run's saved settings say not fused
            for g in opt.param_groups:
                g.update(fused=True, foreach=None)
        with torch.no_grad():
            self.log_alpha.copy_(sd["log_alpha"])
        self.alpha_opt.load_state_dict(sd["alpha_opt"])


def _stacked_critic_adam(opt_sd: dict, layers: int) -> dict:
    """An Adam state dict over the two-MLP critic's parameters (q1's weight, bias per layer, then q2's)
    rearranged for TwinQ's (every layer's stacked weight [2, in, out], then every stacked bias [2, 1, out])."""
    state, group = opt_sd["state"], opt_sd["param_groups"][0]
    ids = group["params"]  # 2 * layers entries per member

    def member(k: int, i: int, j: int) -> dict:  # member k, layer i, j = 0 weight / 1 bias
        return state.get(ids[k * 2 * layers + 2 * i + j], {})

    new_state: dict[int, dict] = {}
    for j, stack in ((0, lambda t: torch.stack([x.T for x in t]).contiguous()), (1, lambda t: torch.stack(t).unsqueeze(1).contiguous())):
        for i in range(layers):
            parts = [member(k, i, j) for k in (0, 1)]
            if not parts[0]:
                continue  # no step taken yet
            new_state[j * layers + i] = {
                "step": torch.as_tensor(parts[0]["step"], dtype=torch.float32).clone(),
                **{m: stack([p[m] for p in parts]) for m in ("exp_avg", "exp_avg_sq")},
            }
    return {"state": new_state, "param_groups": [{**group, "params": list(range(2 * layers))}]}
