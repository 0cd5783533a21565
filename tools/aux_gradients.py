"""Which loss drives the context encoder of a trained PEARL / TCL-PEARL / CoCOA run?

Restores each run's learner and replay buffer through the trainer's own resume path (from symlinks in a
temporary directory, so nothing in the run directory is written), then, on `--batches` seeded update
batches built by `PEARL.batch` (the very inputs `PEARL.update` steps on), takes the gradient on the
context encoder's parameters of each term separately, with no optimiser step:
  critic = the twin-Q Bellman loss (`SAC.critic_loss`) through z,  kl = kl_beta * KL(q(z|c) || N(0, I)),
  aux = aux_weight * InfoNCE (+ kl_beta * KL on the queries for CoCOA).
Prints a markdown table of per-batch medians: the three norms, |aux| / |critic|, the cosine between the
critic gradient and the aux (and the KL) gradient over all encoder parameters flattened (and the share
of batches where the critic/aux cosine is negative), the InfoNCE loss (chance = log(aux rows)), the
mean norm of the meta-batch posterior means ||mu||, and the critic loss. Gradients are taken with
torch.autograd.grad, so .grad fields and optimiser state are never touched.

    .venv/bin/python tools/aux_gradients.py runs/suite/{pearl,tcl,cocoa}_point_robot_s{0,1,2} --batches 50
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from agents.algorithms.pearl import PEARL
from agents.config import load_config
from agents.parts.buffer import TaskSteps
from agents.training.trainer import Trainer
from runtime.logs import configure_logging

COLUMNS = [
    "|g_critic|",
    "|g_kl|",
    "|g_aux|",
    "aux/critic",
    "cos(critic,aux)",
    "P(cos<0)",
    "cos(critic,kl)",
    "InfoNCE",
    "||mu||",
    "critic_loss",
]


def restore(run: Path, scratch: Path) -> Trainer:
    """A Trainer resumed from `run`'s checkpoint.pt and buffer.pt, writing only into `scratch`."""
    for name in ("checkpoint.pt", "buffer.pt"):
        os.symlink(run.resolve() / name, scratch / name)
    return Trainer(load_config(run / "config.yaml"), scratch, resume=True)


def flat_grad(loss: torch.Tensor, params: list[torch.nn.Parameter]) -> torch.Tensor:
    """d loss / d params, flattened (zeros where the loss does not reach a parameter)."""
    if not loss.requires_grad:
        return torch.zeros(sum(p.numel() for p in params))
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return torch.cat(
        [(torch.zeros_like(p) if g is None else g).flatten() for g, p in zip(grads, params, strict=True)]
    )


def cosine(u: torch.Tensor, v: torch.Tensor) -> float:
    n = u.norm() * v.norm()
    return float(u @ v / n) if n > 0 else float("nan")


def measure(trainer: Trainer, batches: int, seed: int) -> dict[str, float]:
    """Per-batch medians of the COLUMNS quantities for one restored run."""
    learner = trainer.learner
    assert isinstance(learner, PEARL), f"{trainer.cfg.algorithm}: not a PEARL-family run"
    params = list(trainer.policy.encoder.parameters())
    steps, rng = TaskSteps(trainer.buffer), np.random.default_rng(seed)
    torch.manual_seed(seed)
    rows: list[dict[str, float]] = []
    for _ in range(batches):
        bt = learner.batch(trainer.buffer, steps, rng)
        critic_loss, _ = learner.sac.critic_loss(bt.x, bt.a, bt.r, bt.x2, bt.done)
        g_c = flat_grad(critic_loss, params)
        g_k = flat_grad(trainer.cfg.pearl.kl_beta * bt.kl, params)
        g_a = flat_grad(bt.aux, params)
        rows.append(
            {
                "|g_critic|": g_c.norm().item(),
                "|g_kl|": g_k.norm().item(),
                "|g_aux|": g_a.norm().item(),
                "aux/critic": (g_a.norm() / g_c.norm()).item(),
                "cos(critic,aux)": cosine(g_c, g_a),
                "P(cos<0)": float(cosine(g_c, g_a) < 0),
                "cos(critic,kl)": cosine(g_c, g_k),
                "InfoNCE": bt.metrics.get("contrastive", float("nan")),
                "||mu||": bt.q.mu.norm(dim=-1).mean().item(),
                "critic_loss": critic_loss.item(),
            }
        )
    med = {k: float(np.median([r[k] for r in rows])) for k in COLUMNS}
    med["P(cos<0)"] = float(np.mean([r["P(cos<0)"] for r in rows]))  # a share of batches, not a median
    return med


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "runs", nargs="+", type=Path, help="run directories holding checkpoint.pt, buffer.pt, config.yaml"
    )
    ap.add_argument("--batches", type=int, default=20, help="update batches per run")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    configure_logging(level="warning")  # the trainer's "resumed" lines stay off the table
    print("| run | " + " | ".join(COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    for run in args.runs:
        with tempfile.TemporaryDirectory() as scratch:
            trainer = restore(run, Path(scratch))
            torch.set_num_threads(1)
            med = measure(trainer, args.batches, args.seed)
            trainer.close()
        print(f"| {run} | " + " | ".join(f"{med[k]:.3g}" for k in COLUMNS) + " |", flush=True)


if __name__ == "__main__":
    main()
