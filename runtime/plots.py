"""Figures of `runtime probe`: what the belief reads by steps since a switch, and the reward gap."""

from __future__ import annotations

from pathlib import Path
from typing import Any

SCORE_LABEL = {"direction": ("direction_accuracy", "direction read right"), "base_task": ("base_accuracy", "base task read right"),
               "vector": ("r2", "R² of the task read")}


def plot_probe(report: dict[str, Any], out: str | Path, title: str = "") -> Path:
    """Left: the score (accuracy or R²) at k transitions under the current task, after a switch and from
    the episode start; right: the mean reward gap to the reference at the same k (when there is one)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    key, label = SCORE_LABEL[report["kind"]]
    has_gap = any("reward_gap" in row for where in ("after_switch", "after_start") for row in report[where].values())
    fig, axes = plt.subplots(1, 2 if has_gap else 1, figsize=(9 if has_gap else 5, 3.4), squeeze=False)
    for where, style in (("after_switch", "o-"), ("after_start", "s--")):
        rows = report[where]
        if not rows:  # stationary episodes have no switches
            continue
        ks = [int(k) for k in rows]
        axes[0, 0].plot(ks, [rows[k][key] for k in rows], style, label=where.replace("_", " "))
        if has_gap:
            axes[0, 1].plot(ks, [rows[k].get("reward_gap") for k in rows], style, label=where.replace("_", " "))
    for ax in axes[0]:
        ax.set_xscale("log")
        ax.set_xticks([1, 2, 5, 10, 20, 50], ["1", "2", "5", "10", "20", "50"])
        ax.set_xlabel("transitions seen under the current task")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0, 0].set_ylabel(label)
    if key != "r2":
        axes[0, 0].set_ylim(0, 1.02)
    if has_gap:
        axes[0, 1].set_ylabel("reward per step: reference - agent")
        axes[0, 1].axhline(0, color="k", lw=0.8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
