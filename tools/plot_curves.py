"""Learning curves (test return, or success rate, vs env steps) from run directories' metrics.jsonl, to one PNG.

    python tools/plot_curves.py runs/moss_pr_ns runs/oracle_pr_ns --out docs/img/curves.png [--random -95.3]
    python tools/plot_curves.py runs/moss_ml1_reach runs/oracle_ml1_reach --metric success --out docs/img/reach.png
    python tools/plot_curves.py runs/moss_s1 runs/moss_s2 runs/oracle_s1 --labels MoSS MoSS oracle --out seeds.png

Runs given the same label (seeds of one agent) share a colour and one legend entry.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402


def eval_rows(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [r for r in rows if r.get("kind") == "eval"]


def draw(runs: list[Path], labels: list[str], success: bool, random: float | None = None, title: str = "") -> plt.Figure:
    """One line per run of its evaluation rows (success rate, or mean return ± std); one colour per label."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    colours: dict[str, str] = {}
    for run, label in zip(runs, labels, strict=True):
        rows = eval_rows(run)
        if not rows:
            print(f"{run}: no evaluation rows yet, skipped")
            continue
        x = [r["step"] for r in rows]
        style = {"marker": "o", "ms": 3, "color": colours.get(label), "label": None if label in colours else label}
        if success:
            (line,) = ax.plot(x, [r.get("success_rate", float("nan")) for r in rows], **style)
        else:
            y = [r["mean_return"] for r in rows]
            s = [r["std_return"] for r in rows]
            (line,) = ax.plot(x, y, **style)
            lo, hi = [a - b for a, b in zip(y, s, strict=True)], [a + b for a, b in zip(y, s, strict=True)]
            ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.15)
        colours.setdefault(label, line.get_color())
    if random is not None:
        ax.axhline(random, ls="--", color="grey", label="random policy")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x / 1000:.0f}k"))
    ax.set_xlabel("env steps")
    if success:
        ax.set_ylabel("test success rate (success at any step)")
        ax.set_ylim(-0.03, 1.03)
    else:
        ax.set_ylabel("test return (mean ± std over episodes)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--title", default="")
    ap.add_argument("--random", type=float, default=None, help="random-policy return, drawn as a dashed line")
    ap.add_argument("--labels", nargs="+", default=None, help="one legend label per run (default: the run folder's name)")
    ap.add_argument("--metric", choices=("return", "success"), default="return", help="what to draw (success: envs that report it)")
    args = ap.parse_args()
    labels = args.labels or [run.name for run in args.runs]
    if len(labels) != len(args.runs):
        ap.error(f"--labels gives {len(labels)} labels for {len(args.runs)} runs")
    fig = draw(args.runs, labels, args.metric == "success", args.random, args.title)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
