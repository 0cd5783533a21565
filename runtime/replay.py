"""`runtime replay`: feed a logged scenario through a checkpoint's encoder, without a simulator.

Every episode of the log runs through the same `policy.update` / `policy.belief` calls the server makes
(all episodes batched together), giving beliefs b_0 .. b_L per episode (b_k: after k transitions).

Settling time of a change point. Let the change point's transition be at step t (the first transition
under the new task) and the segment end e be the next change point's step (or the episode length L). The
reference is the belief at the segment's end, b_e. Per belief dimension d, the tolerance is
`tolerance * range_d`, where range_d is max - min of dimension d over the episode's beliefs (0 ranges are
treated as 1e-8). With a task readout the same is measured on the task read from each belief (its
estimate, in task units) instead of the raw belief dimensions, unless asked otherwise. The settling time is the smallest k >= 1 such that every belief b_{t+k}, ..., b_e lies
within tolerance of b_e in every dimension: the number of new-task transitions the encoder needed before
its belief stayed put. `settled` is false when that only happens at the segment's last step (k = e - t),
i.e. the belief was still moving when the segment ended. `shift` is max_d |b_e - b_t| / range_d, how far
the belief moved across the change (near 0: the encoder did not notice the change). With a checkpoint's
task readout and a log that holds the true task vectors, `estimate_error` is the distance (task units)
between the task read from b_e and the true task of the segment.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.parts.readout import TaskReadout
from agents.policies import AgentPolicy, beliefs_along


@dataclass
class EpisodeBeliefs:
    session: str
    episode: int
    beliefs: np.ndarray  # [L + 1, belief_dim]
    change_points: list[dict[str, Any]]  # {"t", "old", "new"} per change point
    obs: np.ndarray | None = None  # [L + 1, obs_dim]: s_0 .. s_L
    reward: np.ndarray | None = None  # [L]
    task: np.ndarray | None = None  # [L, task_dim]: the logged true task of each transition, when the log has it
    estimate: np.ndarray | None = None  # [L + 1, D]: the readout of each belief (task units), with a readout
    reference_reward: np.ndarray | None = None  # [L]: a reference agent's reward on the same episode, when run


@torch.no_grad()
def replay_beliefs(policy: AgentPolicy, scenario, readout: TaskReadout | None = None) -> list[EpisodeBeliefs]:
    """Beliefs of every (session, episode) of a `envs.scenario.Scenario`, all episodes batched through the
    server's contract calls (`beliefs_along`); with a `readout`, also the task each belief reads as."""
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
    T = max(lengths)

    def padded(key: str, dim: int) -> torch.Tensor:
        x = torch.zeros(n, T, dim)
        for j, (_, trs) in enumerate(groups):
            x[j, : len(trs)] = torch.tensor([tr[key] for tr in trs], dtype=torch.float32).reshape(len(trs), dim)
        return x

    s, a, s2 = padded("obs", policy.obs_dim), padded("action", policy.action_dim), padded("next_obs", policy.obs_dim)
    r = padded("reward", 1).squeeze(-1)
    b = beliefs_along(policy, s, a, r, s2, torch.as_tensor(lengths))
    est = readout(b).numpy() if readout is not None else None
    result = []
    for j, ((sess, ep), trs) in enumerate(groups):
        L = lengths[j]
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
        task = np.asarray([tr["task_vector"] for tr in trs], np.float64) if all("task_vector" in tr for tr in trs) else None
        result.append(
            EpisodeBeliefs(
                sess, ep, b[j, : L + 1].numpy(), cps,
                obs=np.concatenate([s[j, :1].numpy(), s2[j, :L].numpy()]), reward=r[j, :L].numpy(), task=task,
                estimate=None if est is None else est[j, : L + 1],
            )
        )
    return result


def settling(eb: EpisodeBeliefs, tolerance: float = 0.1, on: str = "belief") -> list[dict[str, Any]]:
    """Per change point of one episode: steps until the belief settled (module docstring); `on="estimate"`
    measures the task read from it instead of its raw dimensions."""
    b = eb.estimate if on == "estimate" else eb.beliefs
    if b is None:
        raise ValueError("settling on the task estimate needs a checkpoint with a task readout")
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
        if eb.estimate is not None and eb.task is not None and eb.estimate.shape[1] == eb.task.shape[1]:
            # how far the task read from the belief is from the true one at the segment's end (task units)
            rows[-1]["estimate_error"] = round(float(np.linalg.norm(eb.estimate[e] - eb.task[e - 1])), 4)
    return rows


def report(episodes: list[EpisodeBeliefs], tolerance: float = 0.1, on: str | None = None) -> dict[str, Any]:
    """Settling per change point and its median/mean; `on`: "estimate" (the task read from the belief, the
    default when every episode has one) or "belief" (its raw dimensions)."""
    if on is None:
        on = "estimate" if all(eb.estimate is not None for eb in episodes) else "belief"
    rows = [r for eb in episodes for r in settling(eb, tolerance, on)]
    steps = [r["steps"] for r in rows if r["settled"]]
    return {
        "episodes": len(episodes),
        "transitions": int(sum(len(eb.beliefs) - 1 for eb in episodes)),
        "tolerance": tolerance,
        "settled_on": on,
        "change_points": rows,
        "settled": len(steps),
        "median_steps": float(np.median(steps)) if steps else None,
        "mean_steps": float(np.mean(steps)) if steps else None,
    }


def plot(
    episodes: list[EpisodeBeliefs],
    out: str | Path,
    max_panels: int = 4,
    title: str = "",
    names: list[str] | None = None,
    path: bool = False,
    reference: str = "oracle",
) -> Path:
    """One row per episode (those with change points first), change points dashed. With a readout: what
    the belief reads as (solid) against the logged true task (dashed, same colour) per task dimension,
    or base-task probabilities (`names`: the bases) against the true base; without one, the raw belief
    dimensions. `path` (goal-reaching point robots): beside it, the path in the plane from its start
    (circle) with each segment's goal (star) and the goal read from the belief (cross), by segment colour.
    With reference rewards: the agent's reward per step beside the `reference`'s on the same episode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chosen = sorted(episodes, key=lambda eb: not eb.change_points)[:max_panels]
    with_estimate = all(eb.estimate is not None for eb in chosen)
    path = path and with_estimate and all(eb.task is not None and eb.obs is not None for eb in chosen)
    rewards = all(eb.reference_reward is not None and eb.reward is not None for eb in chosen)
    widths = [2.6] + ([1.0] if path else []) + ([1.6] if rewards else [])
    fig, axes = plt.subplots(
        len(chosen), len(widths), figsize=(9 + 3.4 * (len(widths) - 1), 2.6 * len(chosen) + 0.6), squeeze=False,
        gridspec_kw={"width_ratios": widths},
    )
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for row, eb in enumerate(chosen):
        ax = axes[row, 0]
        steps = np.arange(len(eb.beliefs))
        if with_estimate:
            est = eb.estimate
            for d in range(est.shape[1]):
                c = colors[d % len(colors)]
                label = names[d] if names and d < len(names) else f"task[{d}]"
                ax.plot(steps, est[:, d], lw=1.2, color=c, label=f"{label} read")
                if eb.task is not None:
                    truth = eb.task[:, d] if not names else (eb.task[:, : len(names)].argmax(1) == d).astype(float)
                    ax.step(np.arange(len(truth)), truth, where="post", lw=1.0, ls="--", color=c, label=f"{label} true")
            ax.set_ylabel("probability" if names else "task")
        else:
            for d in range(eb.beliefs.shape[1]):
                ax.plot(steps, eb.beliefs[:, d], lw=1.0, label=f"b[{d}]")
            ax.set_ylabel("belief")
        for cp in eb.change_points:
            ax.axvline(cp["t"], color="k", ls=":", lw=1.0)
        ax.set_title(f"{eb.session} episode {eb.episode}: {len(eb.change_points)} change point(s)", fontsize=9)
        if row == len(chosen) - 1:
            ax.set_xlabel("step (transitions seen)")
        if path:
            _draw_path(axes[row, 1], eb, colors)
        if rewards:
            ax = axes[row, -1]
            ax.plot(np.arange(1, len(eb.reward) + 1), eb.reward, lw=0.8, color="C0", label="agent")
            ax.plot(np.arange(1, len(eb.reference_reward) + 1), eb.reference_reward, lw=0.8, color="C2", label=reference)
            for cp in eb.change_points:
                ax.axvline(cp["t"], color="k", ls=":", lw=1.0)
            ax.set_title("reward per step", fontsize=9)
            ax.tick_params(labelsize=7)
            if row == 0:
                ax.legend(fontsize=7)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    if len(labels) <= 12:
        fig.legend(handles, labels, loc="upper right", fontsize=7, ncol=min(len(labels), 6))
    if title:
        fig.suptitle(title, fontsize=10, x=0.01, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _draw_path(ax, eb: EpisodeBeliefs, colors: list[str]) -> None:
    """The xy path (obs[:, :2]) split at the change points, the true goal of each segment and the goal
    read from the belief at the segment's end."""
    cuts = [0, *[cp["t"] for cp in eb.change_points], len(eb.task)]
    xy = eb.obs[:, :2]
    ax.plot(*xy[0], "o", color="k", ms=4)
    for k, (a, b) in enumerate(zip(cuts[:-1], cuts[1:], strict=True)):
        c = colors[k % len(colors)]
        ax.plot(xy[a : b + 1, 0], xy[a : b + 1, 1], lw=1.0, color=c)
        ax.plot(*eb.task[a, :2], "*", color=c, ms=11, mec="k", mew=0.5)
        ax.plot(*eb.estimate[b, :2], "x", color=c, ms=8, mew=2)
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_title("path: goal * true, x read", fontsize=9)
    ax.tick_params(labelsize=7)
