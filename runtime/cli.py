"""`runtime`: train, evaluate, inspect, serve, drive and replay meta-RL agents."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer

from runtime.logs import configure_logging

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)


def fail(msg: str, code: int = 2) -> None:
    typer.secho(f"error: {msg}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def check_split_and_mode(split: str, nonstationary: str | None) -> None:
    """Refuse an unknown --split or --nonstationary value (exit 2 with a message naming it)."""
    if split not in ("train", "test", "ood"):
        fail(f"--split must be train, test or ood, got {split!r}")
    if nonstationary not in (None, "periodic", "hazard", "none"):
        fail(f"--nonstationary must be periodic, hazard or none, got {nonstationary!r}")


def emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=None, default=float) + "\n")


DEVICE_HELP = "auto (CUDA when present, else the CPU) | cpu | cuda | cuda:N; envs step on the CPU either way"


def device_of(name: str) -> Any:
    """The torch device `name` names, checked against this machine; a bad or absent one ends the command."""
    from agents.device import DeviceError, resolve_device

    try:
        return resolve_device(name)
    except DeviceError as e:
        fail(f"--device: {e}")


def check_env(env_cfg: Any, source: Path) -> None:
    """Build the config's env once, so that a bad env setting (an unknown kwarg or value) ends the command
    with its message before any work starts."""
    from agents.evaluation.protocols import make_env

    try:
        make_env(env_cfg, "train").close()
    except (ValueError, TypeError, KeyError) as e:  # TaskError is a ValueError
        fail(f"{source}: env: {e}")


def oracles(paths: list[Path], device: Any) -> list[Any]:
    """The policies of the `--reference` checkpoints, one per path (loading errors raise CheckpointError)."""
    from agents.checkpoint import build_policy, load_checkpoint

    return [build_policy(load_checkpoint(p), device=device) for p in paths]


POLICY_SET_HELP = "override an acting-time policy setting (its spec, `runtime inspect`): --policy-set refine=2 (value read as YAML; repeatable)"


def key_values(items: list[str], option: str, example: str) -> dict[str, Any]:
    """KEY=VALUE strings -> {key: value read as YAML}; a malformed item ends the command with a message."""
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            fail(f"{option} expects KEY=VALUE (e.g. {example}), got {item!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


@app.command()
def train(
    config: Path = typer.Option(..., "--config", "-c", help="YAML run config (configs/...)"),
    out: Path | None = typer.Option(None, "--out", "-o", help="run directory (default runs/<config name>)"),
    seed: int | None = typer.Option(None, help="override the config's seed"),
    total_steps: int | None = typer.Option(None, "--total-steps", help="override train.total_steps"),
    resume: bool = typer.Option(False, "--resume", help="continue from OUT/checkpoint.pt"),
    progress: bool | None = typer.Option(None, "--progress/--no-progress", help="progress bar (default: on a terminal)"),
    workers: int | None = typer.Option(None, "--workers", min=1, help="collect on N Ray actors (needs the [ray] extra)"),
    ray_address: str | None = typer.Option(None, "--ray-address", help="with --workers: join this Ray cluster (default: start a local one)"),
    set_: list[str] = typer.Option([], "--set", help="override a config key: --set focal.attention=batch (value read as YAML; repeatable)"),
    device: str | None = typer.Option(None, "--device", help=f"override train.device: {DEVICE_HELP}; a resumed run may change it"),
) -> None:
    """Train an agent; checkpoints to OUT/checkpoint.pt (resumable) and OUT/policy.pt (to serve)."""
    configure_logging()
    if ray_address is not None and workers is None:
        fail("--ray-address needs --workers N")
    if workers is not None:
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            fail("--workers needs Ray: pip install 'metarl-runtime[ray]'")
    from agents.config import ConfigError, load_config, parse_config

    overrides: dict[str, Any] = {}
    if seed is not None:
        overrides["seed"] = seed
    if total_steps is not None:
        overrides["train.total_steps"] = total_steps
    if device is not None:
        device_of(device)
        overrides["train.device"] = device
    overrides.update(key_values(set_, "--set", "focal.attention=batch"))
    if resume and set_:
        fail("--set cannot change a run being resumed (its config.yaml is what it continues with)")
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
            if device is not None:  # where it runs does not change what it learns: a resumed run may move
                raw["train"]["device"] = device
            cfg = parse_config(raw, str(saved), stored=True)  # a run started by an older version resumes too
        else:
            cfg = load_config(config, **overrides)
    except ConfigError as e:
        fail(str(e))
    if not resume:
        check_env(cfg.env, config)
    from agents.device import DeviceError
    from agents.training.trainer import Trainer

    if not resume and (out / "checkpoint.pt").exists():
        fail(f"{out} already holds a run; pass --resume to continue it or --out for a new directory")
    try:
        trainer = Trainer(
            cfg, out, resume=resume, progress=sys.stderr.isatty() if progress is None else progress,
            workers=workers, ray_address=ray_address,
        )
    except DeviceError as e:
        fail(f"train.device: {e} (--device overrides it)")
    try:
        result = trainer.train()
    finally:
        trainer.close()
    emit_json({"out": str(out), **result})


@app.command()
def collect(
    config: Path = typer.Option(..., "--config", "-c", help="YAML collect config (configs/collect/...)"),
    out: Path | None = typer.Option(None, "--out", "-o", help="output directory (default: the config's `out`)"),
    progress: bool | None = typer.Option(None, "--progress/--no-progress", help="progress bar (default: on a terminal)"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object on stdout"),
    device: str = typer.Option("auto", "--device", help=f"where the behaviour policy acts: {DEVICE_HELP}"),
    set_: list[str] = typer.Option([], "--set", help="override a config key: --set env.kwargs.sparse=pearl (value read as YAML; repeatable)"),
) -> None:
    """Build offline datasets (OUT/<split>.npz): a behaviour checkpoint at the config's quality levels, or one
    SAC agent per task recorded along its training (`per_task`, FOCAL's recipe)."""
    configure_logging()
    dev = device_of(device)
    from agents.checkpoint import CheckpointError, build_policy, load_checkpoint
    from agents.config import CollectConfig, ConfigError, load_config
    from agents.training.behaviour import per_task_dataset
    from agents.training.datasets import collect_dataset

    try:
        cfg = load_config(config, model=CollectConfig, **key_values(set_, "--set", "env.kwargs.sparse=pearl"))
    except ConfigError as e:
        fail(str(e))
    check_env(cfg.env, config)
    policy, behaviour = None, "random"
    if cfg.policy is not None:
        try:
            ck = load_checkpoint(cfg.policy)
        except CheckpointError as e:
            fail(f"{config}: policy: {e}")
        if ck.env["id"] not in (cfg.env.id, cfg.policy_env):
            fail(
                f"{config}: policy {cfg.policy} was trained on {ck.env['id']!r}, the config collects on {cfg.env.id!r} "
                f"(set policy_env: {ck.env['id']} if its spaces and task vector mean the same there)"
            )
        policy, behaviour = build_policy(ck, device=dev), str(cfg.policy)
    out = out or Path(cfg.out)
    levels = {k: (v.noise, v.episodes_per_task) for k, v in (cfg.levels or {}).items()}
    show = sys.stderr.isatty() if progress is None else progress
    result: dict[str, Any] = {"out": str(out), "splits": {}}
    for split in cfg.splits:
        bar = None
        if show:
            from tqdm import tqdm

            unit = "task" if cfg.per_task is not None else "ep"
            bar = tqdm(desc=f"collect {split}", unit=unit, dynamic_ncols=True)
        tick = bar.update if bar else None
        if cfg.per_task is not None:
            import torch

            torch.set_num_threads(1)  # point-robot-sized nets: one thread is the fastest
            ds = per_task_dataset(cfg.env, split, cfg.per_task, cfg.seed, progress=tick)
        else:
            ds = collect_dataset(policy, cfg.env, split, levels, cfg.seed, behaviour, progress=tick)
        if bar is not None:
            bar.close()
        path = ds.save(out / f"{split}.npz")
        result["splits"][split] = {"path": str(path), **ds.summary()}
    if as_json:
        emit_json(result)
        return
    for r in result["splits"].values():
        typer.echo(f"{r['path']}: {r['episodes']} episodes, {r['transitions']} transitions, {r['tasks']} tasks")
        for name, lv in r["levels"].items():
            typer.echo(f"  {name:>8}: {lv['episodes']} episodes, mean return {lv['mean_return']:.2f}")


@app.command()
def subsample(
    dataset: Path = typer.Argument(..., help="offline dataset (runtime collect's <split>.npz)"),
    out: Path = typer.Option(..., "--out", "-o", help="file to write (.npz)"),
    episodes_per_task: int = typer.Option(6, "--episodes-per-task", min=1, help="episodes kept of every task, in turns over its levels"),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """A small dataset with a few episodes of every task, keeping the level mix: the context file an offline
    policy ships with (`runtime eval --protocol context --context-dataset OUT`)."""
    configure_logging()
    from agents.training.datasets import DatasetError, OfflineDataset

    try:
        small = OfflineDataset.load(dataset).subsample(episodes_per_task, seed)
    except DatasetError as e:
        fail(str(e))
    path = small.save(out)
    s = small.summary()
    typer.echo(f"{path}: {s['episodes']} episodes, {s['transitions']} transitions, {s['tasks']} tasks ({path.stat().st_size / 1024:.0f} KB)")


@app.command("eval")
def evaluate(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="checkpoint or policy file"),
    env: str | None = typer.Option(None, "--env", help="env id (default: the checkpoint's)"),
    split: str = typer.Option("test", help="train | test | ood"),
    episodes: int = typer.Option(20, help="episodes (task i mod n_tasks)"),
    nonstationary: str | None = typer.Option(None, help="periodic | hazard | none (default: as trained)"),
    seed: int = typer.Option(10_000, help="reset seed of episode 0 (episode i uses seed + i)"),
    reference: list[Path] = typer.Option([], "--reference", help="oracle checkpoint: adds normalised score and adaptation delay; repeat it to pool oracle seeds (their mean)"),
    protocol: str = typer.Option("zero-shot", "--protocol", help="zero-shot (online, from the first step) | pearl (trials of exploration + posterior episodes) | context (offline contexts)"),
    exploration: int = typer.Option(2, "--exploration", help="--protocol pearl: exploration episodes per trial"),
    posterior: int = typer.Option(1, "--posterior", help="--protocol pearl: posterior episodes per trial"),
    context_dataset: Path | None = typer.Option(None, "--context-dataset", help="--protocol context: offline dataset of the split (runtime collect)"),
    context_size: int = typer.Option(64, "--context-size", min=1, help="--protocol context: transitions per context"),
    policy_set: list[str] = typer.Option([], "--policy-set", help=POLICY_SET_HELP),
    device: str = typer.Option("auto", "--device", help=f"where the policy acts: {DEVICE_HELP}"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object on stdout"),
) -> None:
    """Evaluation on a split: returns per task and overall (+ normalised score and adaptation delay with --reference).

    --protocol zero-shot (default): every episode starts from the prior and updates the belief at every step.
    --protocol context --context-dataset FILE: FOCAL's offline evaluation, every episode acting on the task
    representation of CONTEXT_SIZE transitions of its task drawn from FILE (a `runtime collect` dataset of SPLIT).
    --protocol pearl: PEARL's meta-test protocol on stationary tasks, EPISODES trials of EXPLORATION +
    POSTERIOR episodes each; PEARL, TCL and CoCOA explore on the prior and then act on the posterior of the
    trial's transitions, other agents carry their inference state from episode to episode. The summary is
    the last (posterior) episode's; `per_episode_return` holds the mean return of each trial episode.
    """
    configure_logging()
    from agents.checkpoint import CheckpointError, build_policy, load_checkpoint
    from agents.config import EnvConfig
    from agents.evaluation import (
        compare_to_reference,
        context_episodes,
        evaluation_episodes,
        per_base_return,
        protocol_episodes,
        score_against,
        summarize,
    )
    from envs import FAMILIES, TaskError

    check_split_and_mode(split, nonstationary)
    if protocol not in ("zero-shot", "pearl", "context"):
        fail(f"--protocol must be zero-shot, pearl or context, got {protocol!r}")
    if (protocol == "context") != (context_dataset is not None):
        fail("--protocol context and --context-dataset go together (FOCAL's evaluation on offline contexts)")
    if protocol == "pearl":
        if nonstationary not in (None, "none"):
            fail("--protocol pearl runs stationary tasks; drop --nonstationary")
        if exploration < 0 or posterior < 1:
            fail(f"--protocol pearl needs --exploration >= 0 and --posterior >= 1, got {exploration} and {posterior}")
    policy_overrides = key_values(policy_set, "--policy-set", "refine=2")
    dev = device_of(device)
    try:
        ck = load_checkpoint(checkpoint)
        policy = build_policy(ck, policy_overrides, dev)
        env_cfg = EnvConfig.model_validate(ck.config["env"])
        if env is not None:
            if env not in FAMILIES:
                fail(f"unknown env id {env!r}; known: {', '.join(FAMILIES)}")
            env_cfg = env_cfg.model_copy(update={"id": env})
        out: dict[str, Any] = {"checkpoint": str(checkpoint), "algorithm": ck.algorithm, "env": env_cfg.id}
        if policy_overrides:
            out["policy_set"] = policy_overrides
        if protocol == "context":
            from agents.training.datasets import DatasetError, OfflineDataset

            if not hasattr(policy, "absorb"):
                fail(f"--protocol context needs a policy with a context posterior (focal, focalpp, pearl, tcl, cocoa), not {ck.algorithm!r}")
            try:
                data = OfflineDataset.load(context_dataset)  # type: ignore[arg-type]
                recs = context_episodes(policy, env_cfg, data, split, episodes, context_size, seed=seed)
            except (DatasetError, ValueError) as e:
                fail(str(e))
            out.update(summarize(recs))
            out.update(split=split, protocol="context", context_dataset=str(context_dataset), context_size=context_size)
        elif protocol == "pearl":
            pargs = dict(split=split, episodes=episodes, seed=seed, exploration=exploration, posterior=posterior)
            trials = protocol_episodes(policy, env_cfg, **pargs)
            out.update(summarize(trials[-1]))
            out.update(split=split, protocol="pearl", exploration=exploration, posterior=posterior)
            out["per_episode_return"] = [summarize(t)["mean_return"] for t in trials]
            if reference:
                o_rets = [summarize(protocol_episodes(ref, env_cfg, **pargs)[-1])["mean_return"] for ref in oracles(reference, dev)]
                r_ret = summarize(protocol_episodes(None, env_cfg, **pargs)[-1])["mean_return"]
                out.update(score_against(out["mean_return"], o_rets, r_ret))
        else:
            args = dict(split=split, episodes=episodes, seed=seed, nonstationary=nonstationary)
            recs = evaluation_episodes(policy, env_cfg, **args)
            out.update(summarize(recs))
            out["split"] = split
            bases = per_base_return(out["per_task_return"], env_cfg, split)
            if bases is not None:
                out["per_base_return"] = bases
            if reference:
                refs = [evaluation_episodes(ref, env_cfg, **args) for ref in oracles(reference, dev)]
                out.update(compare_to_reference(recs, refs, evaluation_episodes(None, env_cfg, **args)))
    except (CheckpointError, TaskError) as e:
        fail(str(e))
    if as_json:
        emit_json(out)
    else:
        for k, v in out.items():
            if k not in ("per_task_return", "per_base_return"):
                typer.echo(f"{k:>18}: {v}")
        for base, ret in out.get("per_base_return", {}).items():
            typer.echo(f"{'return of ' + base:>30}: {ret:.1f}")


@app.command("metaworld-eval")
def metaworld_eval(
    checkpoint: Path | None = typer.Option(None, "--checkpoint", help="checkpoint or policy file (in this process)"),
    server: str | None = typer.Option(None, "--server", help="or: address of a `runtime serve` (one session per env)"),
    env: str | None = typer.Option(None, "--env", help="Meta-World env, e.g. reach-v3 (default: the agent's ML1 family)"),
    task_seed: int | None = typer.Option(None, "--task-seed", help="seed of metaworld.ML1's goals (default: the agent's env.task_seed)"),
    meta_batch: int = typer.Option(50, "--meta-batch", help="vector envs; must divide the 50 test goals (50: each goal once per evaluation)"),
    num_evals: int = typer.Option(1, "--num-evals", min=1, help="evaluations (each: sample tasks, adapt, evaluate)"),
    adaptation_episodes: int = typer.Option(1, "--adaptation-episodes", min=1, help="episodes per env the belief adapts on"),
    adaptation_steps: int = typer.Option(1, "--adaptation-steps", min=1, help="rounds of adaptation episodes (adapt() after each)"),
    evaluation_episodes: int = typer.Option(50, "--evaluation-episodes", min=1, help="episodes Meta-World's evaluation scores (the first to end)"),
    max_episode_steps: int | None = typer.Option(None, "--max-episode-steps", min=1, help="episode length (default: Meta-World's own, 500)"),
    device: str = typer.Option("auto", "--device", help=f"with --checkpoint, where the policy acts: {DEVICE_HELP}"),
    timeout: float = typer.Option(5.0, min=0.01, help="with --server, seconds to wait for each reply"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object on stdout"),
) -> None:
    """Meta-World's own meta-learning evaluation (metaworld.evaluation) of an agent on ML1-test.

    The agent adapts its belief over ADAPTATION_EPISODES episodes of each test goal, then acts on that belief
    (Meta-World's evaluation hands it observations only). Prints Meta-World's success rate (over the first
    EVALUATION_EPISODES episodes to end) and, from the same run, every env's first evaluation episode.
    """
    configure_logging()
    from agents.evaluation.metaworld_agent import PolicyBackend, metaworld_referee
    from envs import TaskError
    from runtime.client import Client, ClientError

    if (checkpoint is None) == (server is None):
        fail("give one of --checkpoint (run the policy here) or --server (an agent served by `runtime serve`)")
    client = None
    try:
        if checkpoint is not None:
            from agents.checkpoint import CheckpointError, build_policy, load_checkpoint

            try:
                ck = load_checkpoint(checkpoint)
                backend: Any = PolicyBackend(build_policy(ck, None, device_of(device)))
            except CheckpointError as e:
                fail(str(e))
            env_cfg = ck.config["env"]
        else:
            from runtime.metaworld_served import ServedBackend

            client = Client(server, timeout_s=timeout)  # type: ignore[arg-type]
            backend = ServedBackend(client)
            env_cfg = backend.hello["env"]
        family = str(env_cfg.get("id", ""))
        if env is None:
            if not family.startswith("ML1-"):
                fail(f"the agent was trained on {family!r}, not a Meta-World ML1 family: pass --env (e.g. reach-v3)")
            env = family.removeprefix("ML1-") + "-v3"
        seed = int(env_cfg.get("task_seed", 0)) if task_seed is None else task_seed
        out = metaworld_referee(
            backend, env, seed, meta_batch, num_evals, adaptation_steps, adaptation_episodes, evaluation_episodes, max_episode_steps
        )
    except (TaskError, ClientError) as e:
        fail(str(e))
    finally:
        if client is not None:
            client.close()
    out = {"agent": str(checkpoint or server), **out}
    if as_json:
        emit_json(out)
    else:
        for k, v in out.items():
            typer.echo(f"{k:>28}: {v}")


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


def inferring_agent(path: Path) -> tuple[Any, Any, Any]:
    """(checkpoint, policy, run config) of a checkpoint whose agent infers its belief; exits naming the
    problem for a bad file or an oracle (whose belief is the true task)."""
    from agents.checkpoint import CheckpointError, build_policy, load_checkpoint
    from agents.config import ConfigError, parse_config

    try:
        ckpt = load_checkpoint(path)
        policy = build_policy(ckpt)
        if policy.needs_task_vector:
            fail(f"{path}: a {ckpt.algorithm} checkpoint acts on the true task; it has no belief to read")
        return ckpt, policy, parse_config(ckpt.config, str(path), stored=True)
    except (CheckpointError, ConfigError) as e:
        fail(str(e))


@app.command()
def readout(
    path: Path = typer.Argument(..., help="checkpoint file"),
    episodes: int = typer.Option(192, min=4, help="training-task episodes to fit on (a third as many more are held out)"),
    seed: int = typer.Option(0),
    out: Path | None = typer.Option(None, "--out", help="write the result here (default: replace PATH)"),
) -> None:
    """Fit the task readout (the belief in task units) on fresh training-task episodes and store it in the checkpoint."""
    configure_logging()
    from agents.checkpoint import store_readout
    from agents.evaluation.readout import fit_readout_on_rollouts

    ckpt, policy, cfg = inferring_agent(path)
    fitted, quality = fit_readout_on_rollouts(policy, cfg.env, episodes, seed)
    written = store_readout(ckpt, fitted.record(quality), out)
    typer.echo(f"task readout ({fitted.kind}, {fitted.out_dim} outputs) stored in {written}: {quality}")


@app.command()
def probe(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="checkpoint of an agent that infers its belief"),
    reference: Path | None = typer.Option(None, "--reference", help="oracle checkpoint: the reward gap at the same steps"),
    episodes: int = typer.Option(40, min=1, help="test-split episodes (task i mod n, the env's own switch schedule)"),
    seed: int = typer.Option(20_000),
    split: str = typer.Option("test"),
    random_actions: bool = typer.Option(False, "--random-actions", help="act at random: what the encoder reads from behaviour not its own"),
    refit: bool = typer.Option(False, "--refit", help="fit a fresh readout on training-task episodes even if the checkpoint has one"),
    plot: Path | None = typer.Option(None, "--plot", help="write the scores by steps since a switch to this PNG"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """What the belief knows about the task, by steps since the last switch (and the reward gap to --reference)."""
    configure_logging()
    from agents.checkpoint import CheckpointError, build_policy, build_readout, load_checkpoint
    from agents.evaluation import make_env
    from agents.evaluation.belief_probe import probe as run_probe
    from agents.evaluation.readout import fit_readout_on_rollouts
    from envs.tasks import TaskError

    ckpt, policy, cfg = inferring_agent(checkpoint)
    try:
        ref = build_policy(load_checkpoint(reference)) if reference is not None else None
        readout = None if refit else build_readout(ckpt)
        make_env(cfg.env, split).close()  # an unknown split is refused before any work
    except (CheckpointError, TaskError) as e:
        fail(str(e))
    quality = ckpt.readout["quality"] if readout is not None and ckpt.readout else None
    if readout is None:
        readout, quality = fit_readout_on_rollouts(policy, cfg.env)
    out = {"checkpoint": str(checkpoint), "readout_quality": quality,
           **run_probe(policy, readout, cfg.env, episodes, seed, split, random_actions, ref)}
    if plot is not None:
        from runtime.plots import plot_probe

        out["plot"] = str(plot_probe(out, plot, f"{checkpoint.name}" + (" (random actions)" if random_actions else "")))
    if as_json:
        emit_json(out)
        return
    score = {"direction": "direction_accuracy", "base_task": "base_accuracy", "vector": "r2"}[out["kind"]]
    typer.echo(f"{out['episodes']} {split} episodes, {out['switches']} switches; readout {quality}")
    for where in ("after_switch", "after_start"):
        typer.echo(f"{where.replace('_', ' ')}:  k  {score:>18}  {'median_error' if score == 'r2' else ''}  reward_gap")
        for k, row in out[where].items():
            err = f"{row['median_error']:>12.3f}" if "median_error" in row else ""
            gap = f"{row['reward_gap']:>10.3f}" if "reward_gap" in row else ""
            typer.echo(f"  {k:>14}  {row[score] if row[score] is not None else float('nan'):>18.3f}  {err}  {gap}   (n={row['n']})")
    if "components" in out:
        c = out["components"]
        typer.echo(f"mixture: {c['used']} of {c['of']} components used at episode ends, cluster purity {c['purity']:.3f}")
    if plot is not None:
        typer.echo(f"plot: {out['plot']}")


SERVE_SPIN_US = 500.0  # docs/serving.md, "Latency": what busy-polling buys a one-session round trip


@app.command()
def serve(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="checkpoint or policy file to serve"),
    bind: str = typer.Option("tcp://127.0.0.1:5555", help="ZeroMQ endpoint to bind (loopback by default; port * picks a free one)"),
    max_sessions: int = typer.Option(1024, "--max-sessions", min=1, help="open sessions at most (then too_many_sessions)"),
    idle_timeout: float = typer.Option(600.0, "--idle-timeout", min=0.001, help="seconds without a request before a session is evicted"),
    state_dir: Path | None = typer.Option(None, "--state-dir", help="save sessions here on shutdown and restore them on start"),
    snapshot_every: float | None = typer.Option(None, "--snapshot-every", min=0.001, help="with --state-dir: also snapshot every session this often (seconds), so a crash loses at most that much"),
    max_frame_bytes: int | None = typer.Option(None, "--max-frame-bytes", min=64, help="larger requests get frame_too_large (default: 4x the model's largest valid request, at least 4 KiB; stated in hello)"),
    batching: bool = typer.Option(True, "--batching/--no-batching", help="--no-batching: one forward pass per request (benchmark baseline)"),
    json_logs: bool | None = typer.Option(None, "--json-logs/--console-logs", help="log format (default: console on a terminal)"),
    spin_us: float = typer.Option(SERVE_SPIN_US, "--spin-us", min=0.0, help="busy-poll this long for the next request before blocking (0: always block)"),
    policy_set: list[str] = typer.Option([], "--policy-set", help=POLICY_SET_HELP),
    metrics_port: int | None = typer.Option(None, "--metrics-port", min=0, max=65535, help="serve Prometheus metrics on http://ADDR:PORT/metrics (0: a free port, logged)"),
    metrics_addr: str = typer.Option("127.0.0.1", "--metrics-addr", help="address the metrics endpoint binds (loopback by default; 0.0.0.0 for every interface)"),
    device: str = typer.Option("cpu", "--device", help=f"where the policy computes: {DEVICE_HELP} (sessions' states stay on the host)"),
) -> None:
    """Serve a checkpoint over ZeroMQ (protocol v1, docs/serving.md) until SIGINT/SIGTERM."""
    import signal

    import zmq

    configure_logging(json=json_logs)
    if snapshot_every is not None and state_dir is None:
        fail("--snapshot-every writes sessions to --state-dir: give one")
    dev = device_of(device)
    from agents.checkpoint import CheckpointError
    from runtime.server import Server
    from runtime.sessions import StateFileError

    try:
        server = Server.from_checkpoint(
            checkpoint, key_values(policy_set, "--policy-set", "refine=2"), device=dev, bind=bind, max_sessions=max_sessions, idle_timeout=idle_timeout, state_dir=state_dir,
            max_frame_bytes=max_frame_bytes, batching=batching, spin_us=spin_us, snapshot_every=snapshot_every,
        )
    except (CheckpointError, StateFileError) as e:
        fail(str(e))
    except zmq.ZMQError as e:  # address in use, bad endpoint ...
        fail(f"cannot bind {bind!r}: {e}")
    metrics = None
    if metrics_port is not None:
        from runtime.metrics import start_metrics

        try:
            metrics = start_metrics(server, metrics_port, metrics_addr)
        except OSError as e:  # port in use, address not on this host
            server.close()
            fail(f"cannot serve metrics on {metrics_addr}:{metrics_port}: {e}")
        import structlog

        structlog.get_logger("serve").info("metrics", url=metrics.url)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: server.stop())
    try:
        server.serve_forever()
    finally:
        if metrics is not None:
            metrics.close()


@app.command()
def client(
    server: str = typer.Option("tcp://127.0.0.1:5555", "--server", help="address of a `runtime serve`"),
    env: str | None = typer.Option(None, "--env", help="env id (default: the checkpoint's)"),
    split: str = typer.Option("test", help="train | test | ood"),
    nonstationary: str | None = typer.Option(None, help="periodic | hazard | none (default: the checkpoint's)"),
    interval: int | None = typer.Option(None, min=1, help="steps between switch draws (default: the checkpoint's)"),
    p: float | None = typer.Option(None, min=0.0, max=1.0, help="switch probability (default: the checkpoint's)"),
    max_episode_steps: int | None = typer.Option(None, "--max-episode-steps", min=1, help="horizon (default: the checkpoint's)"),
    episodes: int = typer.Option(1, min=1, help="episodes (task i mod n_tasks)"),
    seed: int = typer.Option(10_000, help="reset seed of episode 0 (episode i uses seed + i), as `runtime eval`"),
    record: Path | None = typer.Option(None, "--record", help="write a scenario log (.msgpack or .jsonl)"),
    stochastic: bool = typer.Option(False, "--stochastic", help="sample actions instead of the deterministic policy"),
    binary: bool = typer.Option(False, "--binary", help="send vectors as float32 bin instead of arrays"),
    timeout: float = typer.Option(5.0, min=0.01, help="seconds to wait for each reply"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object on stdout"),
) -> None:
    """Simulate an env locally and ask the server for every action; prints per-episode return and switches."""
    configure_logging()
    from envs import FAMILIES, TaskError
    from envs.scenario import ScenarioError
    from runtime.client import Client, ClientError, drive, env_settings

    check_split_and_mode(split, nonstationary)
    if env is not None and env not in FAMILIES:
        fail(f"unknown env id {env!r}; known: {', '.join(FAMILIES)}")
    try:
        with Client(server, timeout_s=timeout, binary=binary) as c:
            hello = c.hello()
            settings = env_settings(hello, env, nonstationary=nonstationary, interval=interval, p=p,
                                    max_episode_steps=max_episode_steps)
            results = drive(c, settings, split, episodes, seed, record, not stochastic, hello)
    except (ClientError, TaskError, ScenarioError) as e:
        fail(str(e))
    rets = [r.ret for r in results]
    out = {"server": server, "algorithm": hello["algorithm"], "env": settings, "split": split,
           "episodes": [r.summary() for r in results], "mean_return": float(sum(rets) / len(rets)),
           "switches": sum(len(r.switches) for r in results)}
    if record is not None:
        out["record"] = str(record)
    if as_json:
        emit_json(out)
        return
    for r in results:
        sw = ", ".join(f"t={s['step']} {s['old']}->{s['new']}" for s in r.switches) or "none"
        typer.echo(f"episode {r.episode:>3}  task {r.task_id:<22} return {r.ret:>10.3f}  steps {r.steps:>4}  switches: {sw}")
    typer.echo(f"mean return {out['mean_return']:.3f} over {len(results)} episode(s), {out['switches']} switch(es)")


def reference_rewards(scenario: Any, episodes: list, reference: Path) -> None:
    """Run `reference` on the episodes a `runtime client --record` log holds (its header's split, seed and
    env settings: episode i is task i mod n with reset seed `seed + i`, as `runtime eval` runs it) and attach
    its per-step rewards; exits when the log cannot be re-run or the re-run's task schedule differs."""
    from agents.checkpoint import CheckpointError, build_policy, load_checkpoint
    from agents.config import EnvConfig
    from agents.evaluation import evaluation_episodes

    h = scenario.header
    if "split" not in h or "seed" not in h:
        fail("--reference: the log's header has no split and seed (it re-runs logs written by `runtime client --record`)")
    keys = ("task_seed", "max_episode_steps", "nonstationary", "interval", "p", "min_dwell")
    env_cfg = EnvConfig(id=scenario.env_id, **{k: h[k] for k in keys if h.get(k) is not None})
    try:
        policy = build_policy(load_checkpoint(reference))
    except CheckpointError as e:
        fail(str(e))
    recs = evaluation_episodes(policy, env_cfg, h["split"], max(eb.episode for eb in episodes) + 1, int(h["seed"]))
    logged = scenario.episodes()
    for eb in episodes:
        rec, ids = recs[eb.episode], [tr["task_id"] for tr in logged[(eb.session, eb.episode)]]
        if rec.task_ids[: len(ids)] != ids:
            fail(f"--reference: episode {eb.episode} re-ran with another task schedule than the log's; cannot compare")
        eb.reference_reward = rec.episode.reward[: len(ids)]


#: families whose task vector is a goal in the plane of obs[:2]: replay also draws the path
GOAL_PLANE_FAMILIES = ("PointRobot", "SparsePointRobot")


@app.command()
def replay(
    file: Path = typer.Argument(..., help="scenario log (.msgpack or .jsonl), e.g. from `runtime client --record`"),
    checkpoint: Path = typer.Option(..., "--checkpoint", help="checkpoint whose encoder to replay"),
    plot: Path | None = typer.Option(None, "--plot", help="write the belief over time to this PNG"),
    tolerance: float = typer.Option(0.1, min=0.0, help="settled: within this fraction of each belief dimension's range"),
    panels: int = typer.Option(4, min=1, help="episodes drawn in the plot (those with change points first)"),
    reference: Path | None = typer.Option(None, "--reference", help="oracle checkpoint: run it on the log's episodes (a `runtime client --record` log) and plot its reward beside the agent's"),
    settle_on: str | None = typer.Option(None, "--settle-on", help="estimate (the task read from the belief; default with a task readout) | belief (its raw dimensions)"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object on stdout"),
) -> None:
    """Replay a scenario log through the encoder: steps to settle after each change point, and a belief plot."""
    configure_logging()
    from agents.checkpoint import CheckpointError, build_policy, build_readout, load_checkpoint
    from envs.scenario import ScenarioError, read_scenario
    from runtime.replay import plot as draw
    from runtime.replay import replay_beliefs, report

    try:
        scenario = read_scenario(file)
        ckpt = load_checkpoint(checkpoint)
        policy, readout = build_policy(ckpt), build_readout(ckpt)
        episodes = replay_beliefs(policy, scenario, readout)
        if settle_on not in (None, "estimate", "belief"):
            raise ValueError(f"--settle-on must be estimate or belief, got {settle_on!r}")
        if settle_on == "estimate" and readout is None:
            raise ValueError(f"--settle-on estimate: {checkpoint} has no task readout (add one with `runtime readout`)")
    except (CheckpointError, ScenarioError, ValueError) as e:
        fail(str(e))
    if reference is not None:
        reference_rewards(scenario, episodes, reference)
    out = {"file": str(file), "checkpoint": str(checkpoint), "env_id": scenario.env_id, **report(episodes, tolerance, settle_on)}
    if readout is not None:
        out["readout"] = {"kind": readout.kind, "names": readout.names, "quality": ckpt.readout["quality"]}  # type: ignore[index]
    if plot is not None:
        goal_task = scenario.env_id in GOAL_PLANE_FAMILIES
        names = readout.names if readout is not None and readout.kind == "base_task" else None
        title = f"{file.name} through {checkpoint.name}"
        out["plot"] = str(draw(episodes, plot, panels, title, names, path=goal_task, reference=reference.stem if reference else "oracle"))
    if as_json:
        emit_json(out)
        return
    typer.echo(f"{out['episodes']} episode(s), {out['transitions']} transitions, {len(out['change_points'])} change point(s)")
    for r in out["change_points"]:
        state = f"settled after {r['steps']} steps" if r["settled"] else f"not settled within {r['segment']} steps"
        err = f", task read {r['estimate_error']:.3f} from the true one" if "estimate_error" in r else ""
        typer.echo(f"  {r['session']} ep {r['episode']} t={r['t']:<4} {r['old']} -> {r['new']}: {state} (shift {r['shift']:.2f}{err})")
    if out["median_steps"] is not None:
        what = "the task estimate's" if out["settled_on"] == "estimate" else "the belief's"
        typer.echo(f"median settling time {out['median_steps']:g} steps (tolerance {tolerance:g} of {what} range)")
    if plot is not None:
        typer.echo(f"plot: {out['plot']}")


if __name__ == "__main__":
    app()
