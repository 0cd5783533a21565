"""ML1 success rates side by side: ours (zero-shot first episode) and Meta-World's own referee, per agent.

    python tools/ml1_table.py runs/moss_ml1_reach runs/pearl_ml1_reach runs/oracle_ml1_reach --md docs/ml1_reach.md

Each argument is a run directory (its policy.pt) or a policy file. On the test goals of the agent's ML1 env:
  * ours: `runtime eval`'s zero-shot protocol, EPISODES episodes (goal i mod 50, reset seed 10000 + i), the
    belief from the prior at every episode's start and updated at every step, success = success at any step
    of the 200-step episode;
  * Meta-World's `metalearning_evaluation` through `agents.evaluation.metaworld_agent` (50 envs, one test goal
    each, one adaptation episode, 50 evaluation episodes), with Meta-World's own 500-step episodes and with
    our 200: its success rate (the first 50 episodes to end) and each env's first evaluation episode.
`--blind ORACLE` adds a row for that oracle handed the mean training goal instead of its own: what a
policy that reaches well but infers nothing scores.
Prints one markdown table (and writes it with --md, with a JSON twin beside it).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from agents.checkpoint import build_policy, load_checkpoint
from agents.config import EnvConfig
from agents.evaluation import evaluation_episodes, summarize
from agents.evaluation.metaworld_agent import PolicyBackend, metaworld_referee
from envs.metaworld_ml1 import ML1Distribution


def policy_file(path: Path) -> Path:
    return path / "policy.pt" if path.is_dir() else path


def blinded(policy: Any, goal: torch.Tensor) -> Any:
    """`policy` (an oracle) told `goal` whatever its task is."""
    told = policy.set_task_vector
    policy.set_task_vector = lambda state, task_vector: told(state, goal.repeat(len(task_vector), 1))
    return policy


def measure(path: Path, episodes: int, horizons: list[int], blind: bool = False) -> dict[str, Any]:
    ck = load_checkpoint(policy_file(path))
    env_cfg = EnvConfig.model_validate(ck.config["env"])
    if not env_cfg.id.startswith("ML1-"):
        raise SystemExit(f"{path}: trained on {env_cfg.id}, not an ML1 family")
    env_name = env_cfg.id.removeprefix("ML1-") + "-v3"
    if blind and ck.algorithm != "oracle":
        raise SystemExit(f"--blind takes an oracle checkpoint, not {ck.algorithm}")
    mean_goal = torch.as_tensor(ML1Distribution(env_name, env_cfg.task_seed).goals("train").mean(0), dtype=torch.float32)

    def policy() -> Any:
        return blinded(build_policy(ck), mean_goal) if blind else build_policy(ck)

    t0 = time.perf_counter()
    ours = summarize(evaluation_episodes(policy(), env_cfg, "test", episodes, seed=10_000))
    row: dict[str, Any] = {
        "agent": str(path),
        "algorithm": "oracle told the mean training goal" if blind else ck.algorithm,
        "env": env_cfg.id,
        "env_steps": int(ck.stats.get("env_steps", 0)),
        "ours_success": ours["success_rate"],
        "ours_return": ours["mean_return"],
    }
    for h in horizons:
        mw = metaworld_referee(PolicyBackend(policy()), env_name, env_cfg.task_seed, max_episode_steps=h)
        row[f"metaworld_{h}"] = mw["metaworld_success_rate"]
        row[f"first_{h}"] = mw["first_episode_success_rate"]
        row[f"first_len_{h}"] = mw["first_episode_median_length"]
    row["wall_s"] = round(time.perf_counter() - t0, 1)
    return row


def table(rows: list[dict[str, Any]], horizons: list[int]) -> str:
    head = ["agent", "env steps", "ours: zero-shot, 200 steps"]
    for h in horizons:
        head += [f"Meta-World, {h} steps", f"first eval. episode, {h} steps"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [f"{r['algorithm']} (`{r['agent']}`)", f"{r['env_steps']:,}", f"{r['ours_success']:.2f}"]
        for h in horizons:
            cells += [f"{r[f'metaworld_{h}']:.2f}", f"{r[f'first_{h}']:.2f} (median {r[f'first_len_{h}']:.0f} steps)"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("agents", nargs="+", type=Path)
    ap.add_argument("--episodes", type=int, default=50, help="zero-shot episodes of ours (default: each test goal once)")
    ap.add_argument("--horizons", type=int, nargs="+", default=[500, 200], help="episode lengths of Meta-World's referee")
    ap.add_argument("--blind", type=Path, default=None, help="oracle run or policy: add it told the mean training goal")
    ap.add_argument("--md", type=Path, default=None, help="write the table here (and a .json beside it)")
    args = ap.parse_args()
    rows = []
    for path in args.agents:
        rows.append(measure(path, args.episodes, args.horizons))
        print(json.dumps(rows[-1]), flush=True)
    if args.blind is not None:
        rows.append(measure(args.blind, args.episodes, args.horizons, blind=True))
        print(json.dumps(rows[-1]), flush=True)
    md = table(rows, args.horizons)
    print(md)
    if args.md is not None:
        args.md.write_text(md)
        args.md.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")
        print(f"wrote {args.md}")


if __name__ == "__main__":
    main()
