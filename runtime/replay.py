"""`runtime replay`: feed a logged scenario through a checkpoint's encoder, without a simulator.

Every episode of the log runs through the same `policy.update` / `policy.belief` calls the server makes
(all episodes batched together), giving beliefs b_0 .. b_L per episode (b_k: after k transitions).

Settling time of a change point. Let the change point's transition be at step t (the first transition
under the new task) and the segment end e be the next change point's step (or the episode length L). The
reference is the belief at the segment's end, b_e. Per belief dimension d, the tolerance is
`tolerance * range_d`, where range_d is max - min of dimension d over the episode's beliefs (0 ranges are
treated as 1e-8). The settling time is the smallest k >= 1 such that every belief b_{t+k}, ..., b_e lies
within tolerance of b_e in every dimension: the number of new-task transitions the encoder needed before
its belief stayed put. `settled` is false when that only happens at the segment's last step (k = e - t),
i.e. the belief was still moving when the segment ended. `shift` is max_d |b_e - b_t| / range_d, how far
the belief moved across the change (near 0: the encoder did not notice the change).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.policies import AgentPolicy, put_state, select_state


@dataclass
class EpisodeBeliefs:
    session: str
    episode: int
    beliefs: np.ndarray  # [L + 1, belief_dim]
    change_points: list[dict[str, Any]]  # {"t", "old", "new"} per change point


@torch.no_grad()
def replay_beliefs(policy: AgentPolicy, scenario) -> list[EpisodeBeliefs]:
    """Beliefs of every (session, episode) of a `envs.scenario.Scenario`, all episodes batched."""
    if policy.needs_task_vector:
        raise ValueError(
            f"replay needs an agent that infers its belief; a {policy.algorithm} checkpoint is given the true task"
        )
    groups = list(scenario.episodes().items())
    if not groups:
        raise ValueError("the scenario log holds no transitions")
    for (sess, ep), trs in groups:
        tr = trs[0]
        dims = (len(tr["obs"]), len(tr["action"]))
        if dims != (policy.obs_dim, policy.action_dim):
            raise ValueError(
                f"scenario episode {sess}/{ep} has obs/action sizes {dims}, the checkpoint expects "
                f"({policy.obs_dim}, {policy.action_dim})"
            )
    n, lengths = len(groups), [len(trs) for _, trs in groups]
    state = policy.init_state(n)
    out = [[b] for b in policy.belief(state).numpy()]
    for k in range(max(lengths)):
        idx = [j for j in range(n) if lengths[j] > k]
        trs = [groups[j][1][k] for j in idx]
        s = torch.tensor([tr["obs"] for tr in trs], dtype=torch.float32)
        a = torch.tensor([tr["action"] for tr in trs], dtype=torch.float32)
        r = torch.tensor([tr["reward"] for tr in trs], dtype=torch.float32)
        s2 = torch.tensor([tr["next_obs"] for tr in trs], dtype=torch.float32)
        new = policy.update(select_state(state, idx), s, a, r, s2)
        put_state(state, idx, new)
        for j, b in zip(idx, policy.belief(new).numpy(), strict=True):
            out[j].append(b)
    result = []
    for j, ((sess, ep), trs) in enumerate(groups):
        cps = []
        for k, tr in enumerate(trs):
            if tr["change_point"]:
                sw = tr["switch"] or {}
                cps.append(
                    {
                        "t": k,
                        "old": sw.get("old", trs[k - 1]["task_id"] if k else ""),
                        "new": sw.get("new", tr["task_id"]),
                    }
                )
        result.append(EpisodeBeliefs(sess, ep, np.stack(out[j]), cps))
    return result


def settling(eb: EpisodeBeliefs, tolerance: float = 0.1) -> list[dict[str, Any]]:
    """Per change point of one episode: steps until the belief settled (module docstring)."""
    b = eb.beliefs
    L = len(b) - 1
    rng = np.maximum(b.max(0) - b.min(0), 1e-8)
    tol = tolerance * rng
    rows = []
    times = [cp["t"] for cp in eb.change_points]
    for j, cp in enumerate(eb.change_points):
        t, e = cp["t"], (times[j + 1] if j + 1 < len(times) else L)
        ref = b[e]
        inside = (np.abs(b[t + 1 : e + 1] - ref) <= tol).all(1)  # b_{t+1} .. b_e
        bad = np.flatnonzero(~inside)
        k = int(bad[-1]) + 2 if len(bad) else 1
        seg = e - t
        rows.append(
            {
                "session": eb.session,
                "episode": eb.episode,
                "t": t,
                "old": cp["old"],
                "new": cp["new"],
                "steps": k,
                "segment": seg,
                "settled": k < seg,
                "shift": round(float((np.abs(ref - b[t]) / rng).max()), 4),
            }
        )
    return rows


def report(episodes: list[EpisodeBeliefs], tolerance: float = 0.1) -> dict[str, Any]:
    rows = [r for eb in episodes for r in settling(eb, tolerance)]
    steps = [r["steps"] for r in rows if r["settled"]]
    return {
        "episodes": len(episodes),
        "transitions": int(sum(len(eb.beliefs) - 1 for eb in episodes)),
        "tolerance": tolerance,
        "change_points": rows,
        "settled": len(steps),
        "median_steps": float(np.median(steps)) if steps else None,
        "mean_steps": float(np.mean(steps)) if steps else None,
    }


def plot(episodes: list[EpisodeBeliefs], out: str | Path, max_panels: int = 4, title: str = "") -> Path:
    """Belief dimensions over time, one panel per episode (those with change points first), change points dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chosen = sorted(episodes, key=lambda eb: not eb.change_points)[:max_panels]
    fig, axes = plt.subplots(len(chosen), 1, figsize=(9, 2.4 * len(chosen) + 0.6), squeeze=False, sharex=True)
    for ax, eb in zip(axes[:, 0], chosen, strict=True):
        steps = np.arange(len(eb.beliefs))
        for d in range(eb.beliefs.shape[1]):
            ax.plot(steps, eb.beliefs[:, d], lw=1.0, label=f"b[{d}]")
        for cp in eb.change_points:
            ax.axvline(cp["t"], color="k", ls="--", lw=1.0)
        ax.set_ylabel("belief")
        ax.set_title(
            f"{eb.session} episode {eb.episode}: {len(eb.change_points)} change point(s)", fontsize=9
        )
    axes[-1, 0].set_xlabel("step (transitions seen)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    if len(labels) <= 12:
        fig.legend(handles, labels, loc="upper right", fontsize=7, ncol=min(len(labels), 6))
    if title:
        fig.suptitle(title, fontsize=10, x=0.01, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
