"""The algorithm registry: each algorithm's run-config model (and so its config section), served policy
and learner, declared once. The trainer builds every agent through `build_agent` and has no per-algorithm
branches."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from agents.algorithms.focal import FOCAL
from agents.algorithms.gridfilter import GridFilter
from agents.algorithms.learner import Learner
from agents.algorithms.moss import MoSS
from agents.algorithms.oracle import Oracle
from agents.algorithms.pearl import PEARL
from agents.config import FocalRun, GridFilterRun, MoSSRun, OracleRun, PearlRun, RunBase
from agents.policies import (
    AgentPolicy,
    CoCOAPolicy,
    FOCALPolicy,
    FOCALPPPolicy,
    GridFilterPolicy,
    MoSSPolicy,
    OraclePolicy,
    PEARLPolicy,
    Spaces,
    TCLPolicy,
)


@dataclass(frozen=True)
class Algorithm:
    """One algorithm: its run-config model, its policy class and learner class, and the policy's settings
    read from a run config (`task_dim`: the env's task-vector size)."""

    config: type[RunBase]
    policy: type[AgentPolicy]
    learner: type[Learner]
    policy_settings: Callable[[Any, int], dict[str, Any]]
    offline: bool = False  # learns from datasets only (`offline:` section), never collects


def _moss(cfg: MoSSRun, task_dim: int) -> dict[str, Any]:
    e = cfg.encoder
    return dict(latent_dim=e.latent_dim, n_components=e.n_components, embed_dim=e.embed_dim, hidden_dim=e.hidden_dim, include_probs=e.include_probs)


def _pearl(cfg: PearlRun, task_dim: int) -> dict[str, Any]:
    p = cfg.pearl
    return dict(latent_dim=p.latent_dim, encoder_hidden=tuple(p.encoder_hidden), sample_z=p.sample_z)


def _focal(cfg: FocalRun, task_dim: int) -> dict[str, Any]:
    f = cfg.focal
    return dict(
        latent_dim=f.latent_dim, encoder_hidden=tuple(f.encoder_hidden), attention=f.attention,
        attention_width=f.attention_width, attention_heads=f.attention_heads, reduction=f.reduction,
    )  # fmt: skip


def _gridfilter(cfg: GridFilterRun, task_dim: int) -> dict[str, Any]:
    g = cfg.gridfilter
    return dict(grid=g.grid, latent_dim=g.latent_dim, hidden=g.hidden, hazard=g.hazard, refine=g.refine, decoder=g.decoder, isotropic=g.isotropic)


ALGORITHMS: dict[str, Algorithm] = {
    "moss": Algorithm(MoSSRun, MoSSPolicy, MoSS, _moss),
    "oracle": Algorithm(OracleRun, OraclePolicy, Oracle, lambda cfg, task_dim: {"task_dim": task_dim}),
    "pearl": Algorithm(PearlRun, PEARLPolicy, PEARL, _pearl),
    "tcl": Algorithm(PearlRun, TCLPolicy, PEARL, _pearl),
    "cocoa": Algorithm(PearlRun, CoCOAPolicy, PEARL, _pearl),
    "focal": Algorithm(FocalRun, FOCALPolicy, FOCAL, _focal, offline=True),
    "focalpp": Algorithm(FocalRun, FOCALPPPolicy, FOCAL, _focal, offline=True),
    "gridfilter": Algorithm(GridFilterRun, GridFilterPolicy, GridFilter, _gridfilter),
}


def build_agent(
    cfg: RunBase, spaces: Spaces, task_dim: int, device: str | torch.device = "cpu"
) -> tuple[AgentPolicy, Learner]:
    """The policy and learner of `cfg.algorithm` for an env with these spaces and task-vector size, on
    `device`. Every network is drawn on the CPU and then moved, so a seed starts the same weights on any
    device; a learner builds its own parts on its policy's device."""
    algo = ALGORITHMS[cfg.algorithm]
    if not isinstance(cfg, algo.config):
        raise TypeError(f"a {cfg.algorithm} run needs a {algo.config.__name__} config, got {type(cfg).__name__}")
    policy = algo.policy(spaces, **algo.policy_settings(cfg, task_dim), actor_hidden=tuple(cfg.sac.hidden)).to(device)
    return policy, algo.learner(policy, cfg)  # type: ignore[call-arg]


__all__ = ["ALGORITHMS", "Algorithm", "Learner", "build_agent"]
