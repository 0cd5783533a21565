"""`runtime`: train, evaluate, inspect, serve, drive and replay meta-RL agents."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from runtime.logs import configure_logging

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)


def fail(msg: str, code: int = 2) -> None:
    typer.secho(f"error: {msg}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=None, default=float) + "\n")


@app.command()
def train(
    config: Path = typer.Option(..., "--config", "-c", help="YAML run config (configs/...)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="run directory (default runs/<config name>)"),
    seed: Optional[int] = typer.Option(None, help="override the config's seed"),
    total_steps: Optional[int] = typer.Option(None, "--total-steps", help="override train.total_steps"),
    resume: bool = typer.Option(False, "--resume", help="continue from OUT/checkpoint.pt"),
    progress: Optional[bool] = typer.Option(None, "--progress/--no-progress", help="progress bar (default: on a terminal)"),
) -> None:
    """Train an agent; checkpoints to OUT/checkpoint.pt (resumable) and OUT/policy.pt (to serve)."""
    configure_logging()
    from agents.config import ConfigError, load_config, parse_config

    overrides: dict[str, Any] = {}
    if seed is not None:
        overrides["seed"] = seed
    if total_steps is not None:
        overrides["train.total_steps"] = total_steps
    out = out or Path("runs") / config.stem
    try:
        if resume:
            import yaml

            saved = out / "config.yaml"
            if not saved.is_file():
                fail(f"--resume: {saved} not found (nothing to resume in {out})")
            raw = yaml.safe_load(saved.read_text())
            if total_steps is not None:
                raw["train"]["total_steps"] = total_steps
            cfg = parse_config(raw, str(saved))
        else:
            cfg = load_config(config, **overrides)
    except ConfigError as e:
        fail(str(e))
    from agents.trainer import Trainer

    if not resume and (out / "checkpoint.pt").exists():
        fail(f"{out} already holds a run; pass --resume to continue it or --out for a new directory")
    trainer = Trainer(cfg, out, resume=resume, progress=sys.stderr.isatty() if progress is None else progress)
    result = trainer.train()
    emit_json({"out": str(out), **result})


@app.command("eval")
def evaluate(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="checkpoint or policy file"),
    env: Optional[str] = typer.Option(None, "--env", help="env id (default: the checkpoint's)"),
    split: str = typer.Option("test", help="train | test | ood"),
    episodes: int = typer.Option(20, help="episodes (task i mod n_tasks)"),
    nonstationary: Optional[str] = typer.Option(None, help="periodic | hazard | none (default: as trained)"),
    seed: int = typer.Option(10_000, help="reset seed of episode 0 (episode i uses seed + i)"),
    reference: Optional[Path] = typer.Option(None, "--reference", help="oracle checkpoint: adds normalised score and adaptation delay"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object on stdout"),
) -> None:
    """Zero-shot evaluation: returns per task and overall (+ normalised score and adaptation delay with --reference)."""
    configure_logging()
    from agents.checkpoint import CheckpointError, build_policy, load_checkpoint
    from agents.config import EnvConfig
    from agents.evaluation import adaptation_delays, evaluation_episodes, normalised_score, summarize
    from envs import FAMILIES, TaskError

    if split not in ("train", "test", "ood"):
        fail(f"--split must be train, test or ood, got {split!r}")
    if nonstationary not in (None, "periodic", "hazard", "none"):
        fail(f"--nonstationary must be periodic, hazard or none, got {nonstationary!r}")
    try:
        ck = load_checkpoint(checkpoint)
        policy = build_policy(ck)
        env_cfg = EnvConfig.model_validate(ck.config["env"])
        if env is not None:
            if env not in FAMILIES:
                fail(f"unknown env id {env!r}; known: {', '.join(FAMILIES)}")
            env_cfg = env_cfg.model_copy(update={"id": env})
        args = dict(split=split, episodes=episodes, seed=seed, nonstationary=nonstationary)
        recs = evaluation_episodes(policy, env_cfg, **args)
        out: dict[str, Any] = {"checkpoint": str(checkpoint), "algorithm": ck.algorithm, "env": env_cfg.id, **summarize(recs)}
        out["split"] = split
        if reference is not None:
            ref = load_checkpoint(reference)
            oracle = evaluation_episodes(build_policy(ref), env_cfg, **args)
            rand = evaluation_episodes(None, env_cfg, **args)
            o_ret, r_ret = summarize(oracle)["mean_return"], summarize(rand)["mean_return"]
            out.update(oracle_return=o_ret, random_return=r_ret, normalised_score=normalised_score(out["mean_return"], r_ret, o_ret))
            steps = sum(len(r.episode) for r in recs)
            scale = abs(o_ret - r_ret) * len(recs) / max(steps, 1)
            delays = adaptation_delays(recs, oracle, scale)
            out["adaptation_delay"] = {
                "switches": len(delays),
                "median": float(__import__("numpy").median(delays)) if delays else None,
                "mean": float(__import__("numpy").mean(delays)) if delays else None,
            }
    except (CheckpointError, TaskError) as e:
        fail(str(e))
    if as_json:
        emit_json(out)
    else:
        for k, v in out.items():
            if k != "per_task_return":
                typer.echo(f"{k:>18}: {v}")


@app.command()
def inspect(
    path: Path = typer.Argument(..., help="checkpoint file"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """What a checkpoint holds: algorithm, env, spaces, network sizes, training statistics."""
    configure_logging()
    from agents.checkpoint import CheckpointError, load_checkpoint

    try:
        s = load_checkpoint(path).summary()
    except CheckpointError as e:
        fail(str(e))
    if as_json:
        emit_json(s)
        return
    for k, v in s.items():
        if k != "config":
            typer.echo(f"{k:>18}: {v}")


if __name__ == "__main__":
    app()
