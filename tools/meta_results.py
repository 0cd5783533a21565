"""PEARL, TCL-PEARL, CoCOA, MoSS and the oracle side by side: normalised scores (zero-shot and PEARL's protocol),
learning curves and embedding quality, mean ± std over seeds, from a suite of runs (tools/run_suite.sh).

    python tools/meta_results.py                        # runs/suite -> docs/results_pearl_family.{md,json}, docs/img/
    python tools/meta_results.py --suite runs/suite --episodes 64 --md docs/results_pearl_family.md

Run directories are `<suite>/<algo>_<cfg>_s<seed>/` (policy.pt, metrics.jsonl, config.yaml). A run counts
once it is finished: its policy.pt records as many env steps as its config's `train.total_steps`
(`--include-unfinished` takes the latest policy.pt of running ones too). For every such run, on the test
tasks:
  * zero-shot: `evaluation_episodes` (EPISODES episodes, task i mod n, reset seed SEED + i; belief updated
    online from the first step);
  * PEARL's protocol: `protocol_episodes`, EPISODES trials of EXPLORATION + POSTERIOR episodes; the
    reported return is the last (posterior) episode's. PEARL, TCL and CoCOA explore on the prior and act
    on the posterior of the trial's transitions; MoSS and the oracle carry their inference state from
    one episode of the trial to the next;
  * embedding quality, on the zero-shot episodes' final beliefs (the belief after each episode's last
    step, its latent-mean part: PEARL's posterior mean, MoSS's most likely component's mean; the oracle's
    "belief" is the true task vector, shown for reference only): a linear probe's R^2 to the true task
    vector (in-sample, mean over task dims), FOCAL's effective separation rate and RMS distance between
    embeddings of different tasks (`agents.evaluation.embedding`);
and caches the result in the run directory (`eval_summary.json`, keyed by these options and the sha256 of
policy.pt), so re-running evaluates only new or changed runs.

Normalised score = (return - random) / (oracle - random) under the same protocol on the same episodes;
the oracle is the same-seed oracle run of the same env config, or the mean over the finished oracle seeds
when that one is missing. Learning curves are the runs' own evaluations during training (metrics.jsonl:
`train.eval_episodes` zero-shot test episodes, seed 10000), mean ± std over seeds; PEARL-protocol curves
would need intermediate checkpoints, which runs do not keep.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from agents.checkpoint import CheckpointError, build_policy, load_checkpoint  # noqa: E402
from agents.config import EnvConfig  # noqa: E402
from agents.evaluation import evaluation_episodes, protocol_episodes, summarize  # noqa: E402
from agents.evaluation.embedding import embedding_report  # noqa: E402
from agents.evaluation.rollout import EpisodeRecord  # noqa: E402
from agents.policies import AgentPolicy  # noqa: E402

ALGOS = ("oracle", "pearl", "tcl", "cocoa", "moss")
LABELS = {"oracle": "oracle", "pearl": "PEARL", "tcl": "TCL-PEARL", "cocoa": "CoCOA", "moss": "MoSS"}
RUN_NAME = re.compile(r"^(?P<algo>[a-z]+)_(?P<cfg>.+)_s(?P<seed>\d+)$")
CACHE = "eval_summary.json"
CACHE_VERSION = 2  # 2: esr_standardised


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass
class Run:
    path: Path
    algo: str
    cfg: str
    seed: int
    env_steps: int
    total_steps: int
    eval_episodes: int  # train.eval_episodes: episodes of the training evaluations (learning curves)
    env: dict[str, Any]

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def finished(self) -> bool:
        return self.env_steps >= self.total_steps


# -- discovery ------------------------------------------------------------------------------------------------
def discover(suite: Path) -> tuple[list[Run], list[str]]:
    """Every run directory of the suite with a readable policy.pt, and notes on the ones without."""
    runs, notes = [], []
    for d in sorted(p for p in suite.iterdir() if p.is_dir()):
        m = RUN_NAME.match(d.name)
        if not m:
            continue
        if not (d / "policy.pt").is_file():
            notes.append(f"{d.name}: no policy.pt yet")
            continue
        try:
            ck = load_checkpoint(d / "policy.pt")
        except CheckpointError as e:
            notes.append(f"{d.name}: unreadable policy.pt ({e})")
            continue
        runs.append(
            Run(
                d,
                m["algo"],
                m["cfg"],
                int(m["seed"]),
                int(ck.stats.get("env_steps", 0)),
                int(ck.config["train"]["total_steps"]),
                int(ck.config["train"]["eval_episodes"]),
                ck.config["env"],
            )
        )
    return runs, notes


def run_status(runs: list[Run], notes: list[str], opts: argparse.Namespace) -> dict[str, str]:
    """Run name -> "finished", "training, X of Y env steps", "no policy.pt yet", ... or "not started", for
    the expected matrix (--algos x --cfgs x --seeds) and every run found."""
    out = {n.split(":")[0]: n.split(": ", 1)[1] for n in notes}
    for r in runs:
        out[r.name] = "finished" if r.finished else f"training, {r.env_steps} of {r.total_steps} env steps"
    for algo in opts.algos.split():
        for cfg in opts.cfgs.split():
            for seed in opts.seeds.split():
                out.setdefault(f"{algo}_{cfg}_s{seed}", "not started")
    return out


def missing_lines(status: dict[str, str], opts: argparse.Namespace) -> list[str]:
    """One line per (cfg, algo) with runs that are not finished, e.g. `point_robot, PEARL: s0 training,
    30080 of 64000 env steps; s1, s2 not started`."""
    groups: dict[tuple[str, str], dict[str, list[str]]] = {}
    for name, st in status.items():
        m = RUN_NAME.match(name)
        if st == "finished" or not m:
            continue
        if opts.include_unfinished and st.startswith("training"):
            st += " (included as it is)"
        groups.setdefault((m["cfg"], m["algo"]), {}).setdefault(st, []).append(f"s{m['seed']}")
    order = {a: i for i, a in enumerate(ALGOS)}
    lines = []
    for (cfg, algo), by in sorted(groups.items(), key=lambda kv: (kv[0][0], order.get(kv[0][1], 99))):
        parts = [f"{', '.join(sorted(seeds))} {st}" for st, seeds in sorted(by.items(), key=lambda kv: kv[1])]
        lines.append(f"{cfg}, {LABELS.get(algo, algo)}: {'; '.join(parts)}")
    return lines


# -- one run: evaluation, cached ------------------------------------------------------------------------------
def latent_part(policy: AgentPolicy, beliefs: np.ndarray) -> np.ndarray:
    """The latent mean of beliefs [N, belief_dim] -> [N, D]: PEARL family (mu, std) and MoSS
    (mu_k*, std_k*[, q(y)]) put the D-dim mean first; the oracle's belief is the task vector itself."""
    if policy.algorithm == "oracle":
        return beliefs
    d = policy.latent_dim if hasattr(policy, "latent_dim") else int(policy.cfg["latent_dim"])
    return beliefs[:, :d]


def embedding_of(policy: AgentPolicy, recs: list[EpisodeRecord]) -> dict[str, Any]:
    """Embedding metrics of the episodes' final beliefs against their (stationary) tasks."""
    z = latent_part(policy, np.stack([r.beliefs[-1] for r in recs]))
    y = np.stack([r.episode.task_vector[-1] for r in recs])
    labels = [int(r.episode.task[0]) for r in recs]
    rep = embedding_report(z, y, labels)
    rep.update(
        latent=z.tolist(),
        task_vector=y.tolist(),
        task_index=labels,
        given=policy.algorithm == "oracle",
    )
    return rep


def cache_key(opts: argparse.Namespace, sha256: str) -> str:
    return json.dumps(
        {
            "v": CACHE_VERSION,
            "split": "test",
            "episodes": opts.episodes,
            "seed": opts.seed,
            "exploration": opts.exploration,
            "posterior": opts.posterior,
            "policy_sha256": sha256,
        },
        sort_keys=True,
    )


def evaluate_run(
    run: Run, opts: argparse.Namespace, env_override: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Zero-shot, PEARL-protocol and embedding numbers of one run, from its cache when it has them.
    `env_override`: evaluate on this env config instead of the checkpoint's (a `--reference` oracle)."""
    ck = load_checkpoint(run.path / "policy.pt")
    key = cache_key(opts, ck.sha256) + (json.dumps(env_override, sort_keys=True) if env_override else "")
    cache_path = run.path / (CACHE if env_override is None else f"{CACHE}.{run.cfg}")
    cache: dict[str, Any] = {}
    if cache_path.is_file():
        try:
            cache = json.loads(cache_path.read_text())
        except json.JSONDecodeError:
            cache = {}
    if key in cache and not opts.refresh:
        log(f"  {run.name}: cached ({cache_path})")
        return cache[key]
    t0 = time.perf_counter()
    policy = build_policy(ck)
    env_cfg = EnvConfig.model_validate(env_override or ck.config["env"])
    recs = evaluation_episodes(policy, env_cfg, "test", opts.episodes, seed=opts.seed, record_beliefs=True)
    zs = summarize(recs)
    trials = protocol_episodes(
        policy, env_cfg, "test", opts.episodes, opts.exploration, opts.posterior, seed=opts.seed
    )
    last = summarize(trials[-1])
    out = {
        "run": run.name,
        "algorithm": ck.algorithm,
        "cfg": run.cfg,
        "seed": run.seed,
        "env": env_cfg.id,
        "env_steps": int(ck.stats.get("env_steps", 0)),
        "total_steps": run.total_steps,
        "policy_sha256": ck.sha256,
        "zero_shot": {k: zs[k] for k in ("episodes", "mean_return", "std_return", "per_task_return")},
        "pearl_protocol": {
            "exploration": opts.exploration,
            "posterior": opts.posterior,
            "per_episode_return": [summarize(t)["mean_return"] for t in trials],
            **{k: last[k] for k in ("episodes", "mean_return", "std_return", "per_task_return")},
        },
        "embedding": embedding_of(policy, recs),
        "eval_wall_s": round(time.perf_counter() - t0, 2),
    }
    # keep only this policy's entries (other options); a retrained or further-trained policy.pt voids the rest
    cache = {k: v for k, v in cache.items() if v.get("policy_sha256") == ck.sha256}
    cache[key] = out
    tmp = cache_path.with_name(CACHE + ".tmp")
    tmp.write_text(json.dumps(cache))
    os.replace(tmp, cache_path)
    log(f"  {run.name}: evaluated in {out['eval_wall_s']:.1f} s -> {cache_path}")
    return out


def random_baseline(env: dict[str, Any], opts: argparse.Namespace, curve_episodes: int) -> dict[str, Any]:
    """The random policy on the same episodes: zero-shot, PEARL protocol, and the training evaluations'."""
    env_cfg = EnvConfig.model_validate(env)
    zs = summarize(evaluation_episodes(None, env_cfg, "test", opts.episodes, seed=opts.seed))
    trials = protocol_episodes(
        None, env_cfg, "test", opts.episodes, opts.exploration, opts.posterior, seed=opts.seed
    )
    curve = summarize(evaluation_episodes(None, env_cfg, "test", curve_episodes, seed=10_000))
    return {
        "zero_shot": zs["mean_return"],
        "pearl_protocol": summarize(trials[-1])["mean_return"],
        "pearl_protocol_per_episode": [summarize(t)["mean_return"] for t in trials],
        "training_eval": curve["mean_return"],
        "training_eval_episodes": curve_episodes,
    }


# -- normalisation and aggregation -----------------------------------------------------------------------------
def oracle_reference(
    results: list[dict[str, Any]], cfg: str, seed: int, protocol: str
) -> tuple[float | None, str]:
    """The oracle's return for (cfg, seed) under `protocol`, else the mean over the cfg's oracle seeds."""
    oracles = {
        r["seed"]: r[protocol]["mean_return"]
        for r in results
        if r["algorithm"] == "oracle" and r["cfg"] == cfg
    }
    if seed in oracles:
        return oracles[seed], f"s{seed}"
    if oracles:
        return float(np.mean(list(oracles.values()))), "mean of " + ",".join(f"s{s}" for s in sorted(oracles))
    return None, "none"


def add_scores(results: list[dict[str, Any]], randoms: dict[str, dict[str, Any]]) -> None:
    for r in results:
        for protocol in ("zero_shot", "pearl_protocol"):
            o_ret, ref = oracle_reference(results, r["cfg"], r["seed"], protocol)
            rnd = randoms[r["cfg"]][protocol]
            score = (
                None if o_ret is None or o_ret == rnd else (r[protocol]["mean_return"] - rnd) / (o_ret - rnd)
            )
            r[protocol].update(normalised_score=score, oracle_return=o_ret, oracle_ref=ref, random_return=rnd)


def stat(values: list[float | None]) -> dict[str, Any]:
    """mean and sample std (ddof 1; None for one seed) of the non-missing values."""
    v = [float(x) for x in values if x is not None and not math.isnan(x)]
    if not v:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)) if len(v) > 1 else None, "n": len(v)}


def aggregate(results: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """(cfg, algo) -> mean ± std over seeds of every reported number."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for cfg in sorted({r["cfg"] for r in results}):
        for algo in ALGOS:
            rs = sorted(
                (r for r in results if r["cfg"] == cfg and r["algorithm"] == algo), key=lambda r: r["seed"]
            )
            if not rs:
                continue
            k = len(rs[0]["pearl_protocol"]["per_episode_return"])
            out.setdefault(cfg, {})[algo] = {
                "seeds": [r["seed"] for r in rs],
                "env_steps": sorted({r["env_steps"] for r in rs}),
                "zero_shot_return": stat([r["zero_shot"]["mean_return"] for r in rs]),
                "zero_shot_score": stat([r["zero_shot"]["normalised_score"] for r in rs]),
                "pearl_return": stat([r["pearl_protocol"]["mean_return"] for r in rs]),
                "pearl_score": stat([r["pearl_protocol"]["normalised_score"] for r in rs]),
                "pearl_per_episode": [
                    stat([r["pearl_protocol"]["per_episode_return"][j] for r in rs]) for j in range(k)
                ],
                "probe_r2": stat([r["embedding"]["probe_r2_mean"] for r in rs]),
                "esr": stat([r["embedding"]["esr"] for r in rs]),
                "esr_standardised": stat([r["embedding"].get("esr_standardised") for r in rs]),
                "rms": stat([r["embedding"]["rms"] for r in rs]),
                "embedding_given": rs[0]["embedding"]["given"],
                "oracle_refs": sorted({r["zero_shot"]["oracle_ref"] for r in rs}),
            }
    return out


# -- learning curves ----------------------------------------------------------------------------------------
def eval_curve(run: Path) -> tuple[np.ndarray, np.ndarray]:
    """(steps, mean_return) of a run's training evaluations; a step logged twice (resumed run) keeps its last row."""
    rows: dict[int, float] = {}
    f = run / "metrics.jsonl"
    if f.is_file():
        for line in f.read_text().splitlines():
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line being written
            if row.get("kind") == "eval":
                rows[int(row["step"])] = float(row["mean_return"])
    steps = np.array(sorted(rows), dtype=float)
    return steps, np.array([rows[int(s)] for s in steps])


def mean_curve(
    curves: list[tuple[np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Mean and std over seeds on the union of their steps within the range every seed covers (linear
    interpolation between a seed's own evaluations; identical schedules need none)."""
    curves = [c for c in curves if len(c[0])]
    if not curves:
        return None
    lo, hi = max(c[0][0] for c in curves), min(c[0][-1] for c in curves)
    grid = np.unique(np.concatenate([c[0] for c in curves]))
    grid = grid[(grid >= lo) & (grid <= hi)]
    if not len(grid):
        return None
    ys = np.stack([np.interp(grid, s, y) for s, y in curves])
    return grid, ys.mean(0), ys.std(0, ddof=1) if len(ys) > 1 else np.zeros(len(grid))


def plot_curves(runs: list[Run], randoms: dict[str, dict[str, Any]], path: Path) -> None:
    cfgs = sorted({r.cfg for r in runs})
    fig, axes = plt.subplots(1, len(cfgs), figsize=(6 * len(cfgs), 4.2), squeeze=False)
    for ax, cfg in zip(axes[0], cfgs, strict=True):
        for algo in ALGOS:
            rs = [r for r in runs if r.cfg == cfg and r.algo == algo]
            mc = mean_curve([eval_curve(r.path) for r in rs])
            if mc is None:
                continue
            x, m, s = mc
            ax.plot(
                x, m, marker="o", ms=3, label=f"{LABELS[algo]} ({len(rs)} seed{'s' if len(rs) > 1 else ''})"
            )
            ax.fill_between(x, m - s, m + s, alpha=0.15)
        if cfg in randoms:
            ax.axhline(randoms[cfg]["training_eval"], ls="--", color="grey", label="random policy")
        ax.set_title(cfg)
        ax.set_xlabel("env steps")
        ax.set_ylabel("test return, zero-shot (mean ± std over seeds)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_embedding(agg: dict[str, dict[str, dict[str, Any]]], path: Path) -> None:
    """Probe R^2 and ESR per algorithm (inferred embeddings only; the oracle's is the given task vector)."""
    cfgs = sorted(agg)
    algos = [a for a in ALGOS if a != "oracle" and any(a in agg[c] for c in cfgs)]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    width = 0.8 / max(len(algos), 4)
    for ax, metric, title in zip(
        axes,
        ("probe_r2", "esr_standardised"),
        ("linear probe R² (latent -> task vector)", "effective separation rate (FOCAL), scale-free"),
        strict=True,
    ):
        for j, algo in enumerate(algos):
            xs, ms, ss = [], [], []
            for i, cfg in enumerate(cfgs):
                st = agg[cfg].get(algo, {}).get(metric)
                if st is None or st["mean"] is None:
                    continue
                xs.append(i + (j - (len(algos) - 1) / 2) * width)
                ms.append(st["mean"])
                ss.append(st["std"] or 0.0)
            ax.bar(xs, ms, width, yerr=ss, capsize=3, label=LABELS[algo])
        ax.set_xticks(range(len(cfgs)))
        ax.set_xticklabels(cfgs)
        ax.set_title(title)
        ax.grid(alpha=0.3, axis="y")
        ax.set_ylim(min(0.0, ax.get_ylim()[0]), max(1.0, ax.get_ylim()[1]))
    if algos:
        axes[0].legend(fontsize=8)
    fig.suptitle("final zero-shot belief on test tasks, mean ± std over seeds", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


# -- report ---------------------------------------------------------------------------------------------------
def fmt(st: dict[str, Any] | None, digits: int = 2) -> str:
    if st is None or st["mean"] is None:
        return "—"
    m = f"{st['mean']:.{digits}f}"
    return m if st["std"] is None else f"{m} ± {st['std']:.{digits}f}"


def markdown(
    agg: dict[str, dict[str, dict[str, Any]]],
    randoms: dict[str, dict[str, Any]],
    opts: argparse.Namespace,
    missing: list[str],
    images: dict[str, Path],
    md_path: Path | None,
) -> str:
    k = opts.exploration + opts.posterior
    lines = [
        "| env | algorithm | seeds | env steps | zero-shot return | zero-shot score | PEARL-protocol return "
        f"| PEARL-protocol score | protocol episodes 1..{k} | probe R² | ESR | ESR (scale-free) | RMS |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for cfg in sorted(agg):
        for algo, a in agg[cfg].items():
            per_ep = " / ".join(f"{s['mean']:.1f}" for s in a["pearl_per_episode"])
            emb = [fmt(a["probe_r2"]), fmt(a["esr"]), fmt(a["esr_standardised"]), fmt(a["rms"])]
            if a["embedding_given"]:
                emb = [f"({e}, true task vector)" if i == 0 else f"({e})" for i, e in enumerate(emb)]
            steps = "/".join(f"{s / 1000:.0f}k" for s in a["env_steps"])
            lines.append(
                f"| {cfg} | {LABELS[algo]} | {len(a['seeds'])} | {steps} | {fmt(a['zero_shot_return'], 1)} "
                f"| {fmt(a['zero_shot_score'])} | {fmt(a['pearl_return'], 1)} | {fmt(a['pearl_score'])} | {per_ep} "
                f"| {' | '.join(emb)} |"
            )
        rnd = randoms[cfg]
        per_ep = " / ".join(f"{v:.1f}" for v in rnd["pearl_protocol_per_episode"])
        lines.append(
            f"| {cfg} | random policy | — | — | {rnd['zero_shot']:.1f} | 0 | {rnd['pearl_protocol']:.1f} | 0 | {per_ep} | — | — | — | — |"
        )
    table = "\n".join(lines)

    def rel(p: Path) -> str:
        return os.path.relpath(p, md_path.parent) if md_path is not None else str(p)

    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cmd = "python tools/meta_results.py " + " ".join(sys.argv[1:])
    doc = [
        f"# PEARL, TCL-PEARL, CoCOA, MoSS and the oracle on {', '.join(opts.cfgs.split())}",
        "",
        f"Generated by `{cmd.strip()}` on {now} from `{opts.suite}`; every number is the mean ± sample std "
        "(ddof 1) over training seeds (no std with one seed).",
        "",
        f"- **zero-shot**: {opts.episodes} test episodes (task i mod n, reset seed {opts.seed} + i), belief "
        "updated online from the first step, deterministic actions.",
        f"- **PEARL protocol**: {opts.episodes} trials of {opts.exploration} exploration + {opts.posterior} "
        "posterior episodes on one test task; the return is the last episode's. PEARL, TCL and CoCOA explore "
        "on the prior and act on the posterior of all the trial's transitions (held for the episode); MoSS "
        "and the oracle carry their inference state from one episode to the next. `protocol episodes` lists "
        "the mean return of each episode of the trial.",
        "- **score** = (return - random) / (oracle - random) under the same protocol on the same episodes; "
        "oracle = the same-seed oracle run of the env config (the mean over its oracle seeds where that seed "
        "is missing).",
        "- **embedding** (zero-shot episodes' final belief, latent-mean part): probe R² = in-sample R² of a "
        "least-squares affine map to the true task vector (mean over its dims); ESR = share of pairs of "
        "embeddings of different tasks farther apart than sqrt(2D/3) (FOCAL), which presumes embeddings in "
        "(-1, 1)^D, so it rewards large latents; ESR (scale-free) = the same after each latent dim is centred "
        "and scaled to the variance of U(-1, 1); RMS = root mean square distance of those pairs. The oracle's row is its given task vector (a reference, not an inferred "
        "embedding).",
        "",
        table,
        "",
    ]
    if missing:
        doc += ["Not in the table yet:", ""] + [f"- {m}" for m in missing] + [""]
    if "curves" in images:
        doc += [
            "Learning curves (the runs' own zero-shot evaluations during training, mean ± std over seeds; "
            "dashed: the random policy on the same episodes):",
            "",
            f"![learning curves]({rel(images['curves'])})",
            "",
        ]
    if "embedding" in images:
        doc += [f"![embedding quality]({rel(images['embedding'])})", ""]
    return "\n".join(doc)


def to_jsonable(x: Any) -> Any:
    if isinstance(x, float) and math.isnan(x):
        return None
    if isinstance(x, dict):
        return {k: to_jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [to_jsonable(v) for v in x]
    return x


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", type=Path, default=Path("runs/suite"))
    ap.add_argument(
        "--episodes", type=int, default=64, help="test episodes (zero-shot) and trials (PEARL protocol)"
    )
    ap.add_argument("--exploration", type=int, default=2)
    ap.add_argument("--posterior", type=int, default=1)
    ap.add_argument("--seed", type=int, default=10_000, help="reset seed of episode 0")
    ap.add_argument("--algos", default=" ".join(ALGOS), help="expected algorithms (to list what is missing)")
    ap.add_argument("--cfgs", default="point_robot sparse_point_robot", help="expected env configs")
    ap.add_argument("--seeds", default="0 1 2", help="expected seeds")
    ap.add_argument("--md", type=Path, default=Path("docs/results_pearl_family.md"))
    ap.add_argument("--json", type=Path, default=Path("docs/results_pearl_family.json"))
    ap.add_argument("--img-dir", type=Path, default=Path("docs/img"))
    ap.add_argument(
        "--prefix",
        default="pearl_family",
        help="figure file names: <prefix>_curves.png, <prefix>_embedding.png",
    )
    ap.add_argument(
        "--include-unfinished",
        action="store_true",
        help="also evaluate runs still training (latest policy.pt)",
    )
    ap.add_argument("--refresh", action="store_true", help="ignore cached evaluations")
    ap.add_argument(
        "--reference",
        action="append",
        default=[],
        metavar="CFG=CHECKPOINT",
        help="the oracle of CFG: CHECKPOINT evaluated on CFG's env (e.g. the dense PointRobot oracle for "
        "sparse_point_robot, where an oracle trained on the sparse reward never finds a goal); repeatable",
    )
    opts = ap.parse_args()
    if opts.exploration < 0 or opts.posterior < 1:
        ap.error("need --exploration >= 0 and --posterior >= 1")
    torch.set_num_threads(1)
    if not opts.suite.is_dir():
        raise SystemExit(f"error: {opts.suite} is not a directory")

    runs, notes = discover(opts.suite)
    use = [r for r in runs if r.algo in ALGOS and (r.finished or opts.include_unfinished)]
    status = run_status(runs, notes, opts)
    missing = missing_lines(status, opts)
    n_out = sum(1 for v in status.values() if v != "finished")
    log(f"{len(use)} run(s) to report; {n_out} of the expected runs not finished")
    if not use:
        for m in missing:
            log(f"  {m}")
        raise SystemExit("error: no finished run to report yet")

    results = []
    for i, run in enumerate(use, 1):
        log(f"[{i}/{len(use)}] {run.name} ({run.env_steps} env steps)")
        results.append(evaluate_run(run, opts))
    for item in opts.reference:
        cfg, _, path = item.partition("=")
        cfg_runs = [r for r in use if r.cfg == cfg]
        if not path or not cfg_runs:
            raise SystemExit(
                f"error: --reference {item!r}: expected CFG=CHECKPOINT with finished runs of CFG"
            )
        ck = load_checkpoint(path)
        ref = Run(
            Path(path).parent,
            "oracle",
            cfg,
            -1,
            int(ck.stats.get("env_steps", 0)),
            int(ck.stats.get("env_steps", 0)),
            cfg_runs[0].eval_episodes,
            cfg_runs[0].env,
        )
        log(f"reference oracle for {cfg}: {path} on {cfg_runs[0].env['id']}")
        res = evaluate_run(ref, opts, env_override=cfg_runs[0].env)
        res["reference"] = str(path)
        results.append(res)

    randoms: dict[str, dict[str, Any]] = {}
    for cfg in sorted({r.cfg for r in use}):
        envs_of = {json.dumps(r.env, sort_keys=True) for r in use if r.cfg == cfg}
        if len(envs_of) > 1:
            log(f"warning: {cfg}: runs differ in their env config; the random policy uses the first")
        cfg_runs = [r for r in use if r.cfg == cfg]
        eval_eps = {r.eval_episodes for r in cfg_runs}
        if len(eval_eps) > 1:
            log(
                f"warning: {cfg}: runs evaluate on different numbers of episodes during training: {sorted(eval_eps)}"
            )
        log(f"random policy on {cfg}")
        randoms[cfg] = random_baseline(cfg_runs[0].env, opts, cfg_runs[0].eval_episodes)

    add_scores(results, randoms)
    agg = aggregate(results)
    no_oracle = [cfg for cfg in agg if "oracle" not in agg[cfg]]
    for cfg in no_oracle:
        missing.append(f"{cfg}: no finished oracle run, so no normalised scores")

    images = {
        "curves": opts.img_dir / f"{opts.prefix}_curves.png",
        "embedding": opts.img_dir / f"{opts.prefix}_embedding.png",
    }
    plot_curves(use, randoms, images["curves"])
    plot_embedding(agg, images["embedding"])
    log(f"wrote {images['curves']} and {images['embedding']}")

    doc = markdown(agg, randoms, opts, missing, images, opts.md)
    print(doc)
    if opts.md:
        opts.md.parent.mkdir(parents=True, exist_ok=True)
        opts.md.write_text(doc + "\n")
        log(f"wrote {opts.md}")
    if opts.json:
        raw = [
            {k: v for k, v in r.items() if k != "embedding"}
            | {
                "embedding": {
                    k: v
                    for k, v in r["embedding"].items()
                    if k not in ("latent", "task_vector", "task_index")
                }
            }
            for r in results
        ]
        payload = {
            "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(opts).items()},
            "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "runs": raw,
            "random": randoms,
            "aggregate": agg,
            "missing": missing,
            "run_status": status,
        }
        opts.json.parent.mkdir(parents=True, exist_ok=True)
        opts.json.write_text(json.dumps(to_jsonable(payload), indent=1) + "\n")
        log(f"wrote {opts.json}")


if __name__ == "__main__":
    main()
