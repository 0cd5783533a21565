"""Benchmark: env steps/s of every task family against its bare base env, and of the wrappers.

For each family id in `envs.FAMILIES` (those whose module imports; the others are skipped with a message)
this steps our env (`envs.make(id)`) and the bare base env it is built on through the same pre-drawn
random actions, resetting whenever an episode ends (so reset cost is included in both):

- MuJoCo families: the gymnasium v5 env (`gymnasium.make("HalfCheetah-v5", ...)`, same wrappers, same
  horizon), with the base constructor arguments our env uses (frame skip, obs layout, termination, ...)
  read back from our env so both simulate the same thing;
- ML1 families: the bare Meta-World env of the same class on the same Meta-World task, in a TimeLimit;
- point robots: no base env, our steps/s only.

Also on CheetahVel: the `NonStationary` wrapper (periodic, interval 100, p 0.5) and the `ScenarioRecorder`
(msgpack to a temporary file) against the plain env.

Repetitions are interleaved (ours, bare, ours, bare, ... with the order alternating) and each row reports
median steps/s over the repetitions and the median of the paired overheads `t_ours / t_bare - 1`. Rows
above the 10% target are flagged.

    python tools/bench_envs.py [--steps 2000] [--reps 5] [--only CheetahVel AntGoal ...] [--threads 1]
"""

from __future__ import annotations

import argparse
import gc
import inspect
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

TARGET = 0.10  # overhead above which a row is flagged


@dataclass
class Variant:
    """One env to time: `make()` builds it (wrapped, with a time limit); `label` names it in the table."""

    label: str
    make: Callable[[], Any]


@dataclass
class Row:
    name: str
    ours: Variant
    bare: Variant | None
    note: str = ""


def _run(env: Any, actions: Any) -> float:
    """Seconds to step `env` through `actions` (reset when an episode ends); GC off while timing."""
    env.reset(seed=0)
    gc.collect()
    gc.disable()
    try:
        t0 = time.perf_counter()
        for a in actions:
            _, _, terminated, truncated, _ = env.step(a)
            if terminated or truncated:
                env.reset()
        return time.perf_counter() - t0
    finally:
        gc.enable()


def _mujoco_base(env: Any) -> tuple[str, dict[str, Any]] | None:
    """The gymnasium id and constructor kwargs of the v5 base env of our (unwrapped) env, or None."""
    from gymnasium.envs.mujoco.ant_v5 import AntEnv
    from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv
    from gymnasium.envs.mujoco.hopper_v5 import HopperEnv
    from gymnasium.envs.mujoco.humanoid_v5 import HumanoidEnv
    from gymnasium.envs.mujoco.walker2d_v5 import Walker2dEnv

    bases = [
        (HalfCheetahEnv, "HalfCheetah-v5"),
        (AntEnv, "Ant-v5"),
        (HumanoidEnv, "Humanoid-v5"),
        (Walker2dEnv, "Walker2d-v5"),
        (HopperEnv, "Hopper-v5"),
    ]
    for cls, gym_id in bases:
        if isinstance(env, cls):
            kwargs: dict[str, Any] = {}
            for name in inspect.signature(cls.__init__).parameters:
                if name in ("self", "kwargs", "default_camera_config", "xml_file"):
                    continue
                for attr in (f"_{name}", name):
                    if hasattr(env, attr):
                        value = getattr(env, attr)
                        kwargs[name] = tuple(value) if isinstance(value, list) else value
                        break
            return gym_id, kwargs
    return None


def _rows(ids: list[str], only: bool) -> list[Row]:
    import gymnasium as gym

    import envs

    rows: list[Row] = []
    for env_id in ids:
        spec = envs.FAMILIES[env_id]
        try:
            probe = envs.make(env_id)
        except Exception as e:  # a family not written yet, or one that fails to build
            print(f"skip {env_id}: {type(e).__name__}: {e}", file=sys.stderr)
            continue
        unwrapped = probe.unwrapped
        ours = Variant(env_id, lambda i=env_id: envs.make(i))
        base = _mujoco_base(unwrapped)
        if base is not None:
            gym_id, kwargs = base
            bare = Variant(
                gym_id,
                lambda g=gym_id, k=kwargs, h=spec.max_episode_steps: gym.make(g, max_episode_steps=h, **k),
            )
            rows.append(Row(env_id, ours, bare))
        elif env_id.startswith("ML1-"):
            rows.append(Row(env_id, ours, _bare_metaworld(unwrapped, spec.max_episode_steps)))
        else:
            rows.append(Row(env_id, ours, None, "no base env"))
        probe.close()
    if not only or "CheetahVel" in ids:
        rows += _wrapper_rows()
    return rows


def _bare_metaworld(ours: Any, horizon: int) -> Variant:
    import gymnasium as gym

    from envs.metaworld_ml1 import ml1_benchmark

    name, seed = ours.env_name, ours.distribution.seed

    def make() -> Any:
        ml1 = ml1_benchmark(name, seed)
        mw = ml1.train_classes[name]()
        mw.set_task(ml1.train_tasks[0])
        return gym.wrappers.TimeLimit(gym.wrappers.OrderEnforcing(mw), horizon)

    return Variant(f"metaworld {name}", make)


def _wrapper_rows() -> list[Row]:
    import envs

    rows: list[Row] = []
    plain = Variant("CheetahVel", lambda: envs.make("CheetahVel"))
    try:
        envs.make("CheetahVel").close()
    except Exception as e:
        print(f"skip wrapper rows: CheetahVel does not build: {type(e).__name__}: {e}", file=sys.stderr)
        return rows
    try:
        from envs.wrappers import NonStationary

        rows.append(
            Row(
                "CheetahVel + NonStationary",
                Variant("NonStationary(periodic)", lambda: NonStationary(envs.make("CheetahVel"), seed=0)),
                plain,
            )
        )
    except ImportError as e:
        print(f"skip NonStationary: {e}", file=sys.stderr)
    try:
        from envs.scenario import ScenarioRecorder

        tmp = tempfile.mkdtemp(prefix="bench_envs_")

        def recorded() -> Any:
            path = os.path.join(tmp, f"{time.monotonic_ns()}.msgpack")
            return ScenarioRecorder(envs.make("CheetahVel"), path)

        rows.append(
            Row("CheetahVel + ScenarioRecorder", Variant("ScenarioRecorder(msgpack)", recorded), plain)
        )
    except ImportError as e:
        print(f"skip ScenarioRecorder: {e}", file=sys.stderr)
    return rows


def _measure(row: Row, steps: int, reps: int, seed: int = 0) -> dict[str, Any]:
    import numpy as np

    variants = [row.ours] + ([row.bare] if row.bare is not None else [])
    built = [v.make() for v in variants]
    space = built[0].action_space
    rng = np.random.default_rng(seed)
    actions = rng.uniform(space.low, space.high, size=(steps, *space.shape)).astype(space.dtype)
    for env in built:  # warm-up
        _run(env, actions[: min(200, steps)])
    times: list[list[float]] = [[] for _ in built]
    for r in range(reps):
        order = range(len(built)) if r % 2 == 0 else reversed(range(len(built)))
        for i in order:
            times[i].append(_run(built[i], actions))
    for env in built:
        env.close()
    out: dict[str, Any] = {"ours": steps / statistics.median(times[0])}
    if len(built) > 1:
        out["bare"] = steps / statistics.median(times[1])
        out["overhead"] = statistics.median(a / b - 1.0 for a, b in zip(times[0], times[1], strict=True))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=2000, help="env steps per repetition (default 2000)")
    parser.add_argument("--reps", type=int, default=5, help="interleaved repetitions, >= 5 (default 5)")
    parser.add_argument("--only", nargs="+", metavar="ID", help="family ids to run (default: all)")
    parser.add_argument(
        "--threads", type=int, default=1, help="BLAS/OpenMP threads and CPUs the process may use (default 1)"
    )
    args = parser.parse_args(argv)
    if args.reps < 5:
        parser.error("--reps must be >= 5 (medians over fewer repetitions are too noisy)")
    if args.steps < 1 or args.threads < 1:
        parser.error("--steps and --threads must be positive")
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    if hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))[: args.threads]
        os.sched_setaffinity(0, cpus)

    import warnings

    warnings.filterwarnings("ignore", module="gymnasium")
    import envs

    ids = list(envs.FAMILIES)
    if args.only:
        unknown = [i for i in args.only if i not in envs.FAMILIES]
        if unknown:
            parser.error(f"unknown ids {unknown}; known: {', '.join(envs.FAMILIES)}")
        ids = [i for i in ids if i in args.only]

    rows = _rows(ids, only=bool(args.only))
    print(f"steps/s, median of {args.reps} interleaved reps x {args.steps} steps, {args.threads} thread(s)\n")
    print("| env | base env | ours steps/s | base steps/s | overhead | |")
    print("|---|---|---:|---:|---:|---|")
    flagged = 0
    for row in rows:
        try:
            m = _measure(row, args.steps, args.reps)
        except Exception as e:
            print(
                f"| {row.name} | {row.bare.label if row.bare else '-'} | failed: {type(e).__name__}: {e} | | | |"
            )
            continue
        if "bare" in m:
            flag = f"> {TARGET:.0%}" if m["overhead"] > TARGET else ""
            flagged += bool(flag)
            print(
                f"| {row.name} | {row.bare.label} | {m['ours']:,.0f} | {m['bare']:,.0f} | "
                f"{m['overhead']:+.1%} | {flag} |"
            )
        else:
            print(f"| {row.name} | - | {m['ours']:,.0f} | - | - | {row.note} |")
        sys.stdout.flush()
    if flagged:
        print(f"\n{flagged} row(s) above the {TARGET:.0%} overhead target")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
