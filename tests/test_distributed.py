"""Rollouts on Ray actors (agents/training/distributed.py, `runtime train --workers N`).

One local Ray instance (2 CPUs) serves the whole module; one 2-worker Ray trainer is shared by the tests
(its actors hold both CPUs), so each test rewinds its RNG and buffer instead of starting new actors. The
two-node cluster test is in the slow tier.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import structlog
import torch
import yaml
from structlog.testing import capture_logs
from typer.testing import CliRunner

ray = pytest.importorskip("ray")

from test_training import EPISODE, tiny  # noqa: E402

from agents.config import RunConfig  # noqa: E402
from agents.evaluation.rollout import EpisodeRecord  # noqa: E402
from agents.parts.buffer import EpisodeBuffer  # noqa: E402
from agents.training.distributed import slice_seed, slices  # noqa: E402
from agents.training.trainer import Trainer  # noqa: E402
from runtime.cli import app  # noqa: E402

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ray_session():
    started = not ray.is_initialized()
    if started:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def ray_trainer(ray_session, tmp_path_factory):
    tr = Trainer(tiny(), tmp_path_factory.mktemp("ray_trainer"), workers=2)
    yield tr
    tr.close()


@pytest.fixture(autouse=True)
def _restore_logging():
    yield
    structlog.reset_defaults()  # the CLI points structlog at CliRunner's stderr


def rewind(tr: Trainer) -> Trainer:
    """Back to the state right after construction: RNG, step count, empty buffer (the policy is untrained)."""
    tr.rng = np.random.default_rng(tr.cfg.seed)
    tr.step = 0
    b = tr.buffer
    tr.buffer = EpisodeBuffer(
        b.capacity, b.horizon, b.obs.shape[-1], b.action.shape[-1], b.task_vector.shape[-1]
    )
    return tr


def steps_per_task(records: list[EpisodeRecord]) -> Counter:
    c: Counter = Counter()
    for r in records:
        c.update(r.episode.task.tolist())
    return c


def assert_whole(records: list[EpisodeRecord], horizon: int) -> None:
    for r in records:
        ep = r.episode
        assert (
            len(ep) == horizon
        )  # the point robot never terminates early: a whole episode is `horizon` steps
        for k in ("obs", "action", "next_obs", "task", "task_vector", "terminated"):
            assert len(getattr(ep, k)) == horizon, k
        assert len(set(r.task_ids)) == 1  # stationary: one task all episode ...
        assert (ep.task == int(r.task_ids[0].rsplit("/", 1)[-1])).all()  # ... and the index matches the id
        assert np.array_equal(ep.obs[1:], ep.next_obs[:-1])  # consecutive steps of one trajectory


def same_records(a: list[EpisodeRecord], b: list[EpisodeRecord]) -> bool:
    return len(a) == len(b) and all(
        x.task_ids == y.task_ids
        and all(
            np.array_equal(getattr(x.episode, k), getattr(y.episode, k)) for k in ("obs", "action", "reward")
        )
        for x, y in zip(a, b, strict=True)
    )


# -- no Ray unless asked ----------------------------------------------------------------------------------
def test_in_process_training_never_imports_ray(tmp_path: Path) -> None:
    cfg = tiny(train__total_steps=2 * 4 * EPISODE)  # the initial episodes and one epoch
    code = f"""
import sys, json
import agents.training.trainer, runtime.cli
from agents.config import parse_config
assert "ray" not in sys.modules, "import"
tr = agents.training.trainer.Trainer(parse_config(json.loads({cfg.model_dump_json()!r})), {str(tmp_path)!r})
tr.train()
assert tr.epoch == 1 and tr.step == {2 * 4 * EPISODE}
assert not any(m == "ray" or m.startswith("ray.") for m in sys.modules), "train"
print("ok")
"""
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip().splitlines()[-1] == "ok", r.stderr[-2000:]


def test_slices_cover_the_round_in_order() -> None:
    assert slices(7, 2) == [(0, 4), (4, 7)]
    assert slices(1, 3) == [(0, 1), (1, 1), (1, 1)]
    kw = [{"seed": s} for s in (5, 6)]
    assert slice_seed(kw) == slice_seed(list(kw)) != slice_seed(kw[:1])


# -- the Ray path ----------------------------------------------------------------------------------------
def test_ray_collects_what_in_process_collects(ray_trainer: Trainer, tmp_path: Path) -> None:
    local = Trainer(tiny(), tmp_path)
    remote = rewind(ray_trainer)
    assert ray_trainer.collector.__class__.__name__ == "RayCollector"
    # the random initial episodes: actions come from each env's seeded action space, so they are identical
    a, b = local.collect(4, random=True), remote.collect(4, random=True)
    assert same_records(a, b)
    # policy rounds (7 episodes: 4 + 3 over the two workers): same tasks in the same order, same steps per
    # task, whole trajectories; the action noise comes from other generators, so the actions differ
    for _ in range(2):
        a, b = local.collect(7, random=False), remote.collect(7, random=False)
        assert [r.task_ids for r in a] == [r.task_ids for r in b]
        assert steps_per_task(a) == steps_per_task(b)
        assert_whole(b, local.horizon)
    assert remote.step == local.step == (4 + 7 + 7) * EPISODE
    assert remote.buffer.n_added == local.buffer.n_added == 18
    assert torch.equal(remote.buffer.task, local.buffer.task)
    assert torch.equal(remote.buffer.length, local.buffer.length)
    # the rows from the Ray workers are the driver's own, writable arrays (not object-store views)
    assert all(r.episode.obs.flags.writeable for r in b)


def test_ray_rounds_are_reproducible_and_follow_the_weights(ray_trainer: Trainer) -> None:
    tr = rewind(ray_trainer)
    c = tr.collector
    kw = [{"seed": 100 + i, "options": {"task_index": i % 5}} for i in range(6)]
    first, again = c.collect(tr.policy, kw), c.collect(tr.policy, kw)
    assert same_records(first, again)  # a slice's noise seed depends on its episodes only
    assert [int(r.episode.task[0]) for r in first] == [i % 5 for i in range(6)]
    # new weights reach the workers: a changed actor changes the actions
    saved = {k: v.clone() for k, v in tr.policy.state_dict().items()}
    with torch.no_grad():
        for p in tr.policy.actor.parameters():
            p.add_(0.5)
    try:
        moved = c.collect(tr.policy, kw)
    finally:
        tr.policy.load_state_dict(saved)
    assert not same_records(first, moved)
    assert same_records(first, c.collect(tr.policy, kw))


def test_killed_worker_is_replaced_and_its_round_recollected(ray_trainer: Trainer) -> None:
    tr = rewind(ray_trainer)
    c = tr.collector
    kw = [{"seed": 200 + i, "options": {"task_index": i}} for i in range(6)]
    reference = c.collect(tr.policy, kw)
    dead = c.actors[1]
    ray.kill(dead)
    with capture_logs() as logs:
        records = c.collect(tr.policy, kw)
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert len(warnings) == 1 and warnings[0]["worker"] == 1 and "re-collected" in warnings[0]["event"]
    assert c.actors[1] is not dead and c.replaced >= 1
    assert same_records(records, reference)  # the whole slice again, nothing partial, nothing lost
    assert_whole(records, tr.horizon)

    # killed while the round is in flight: the same
    submit = c._submit
    killed: list = []

    def submit_then_kill(i, weights, part):
        ref = submit(i, weights, part)
        if i == 0 and not killed:
            killed.append(c.actors[0])
            ray.kill(c.actors[0])
        return ref

    c._submit = submit_then_kill  # type: ignore[method-assign]
    try:
        with capture_logs() as logs:
            steps = tr.step
            records = tr.collect(
                40, random=False
            )  # 20 episodes per worker: still running when the kill lands
    finally:
        del c._submit
    assert [e["worker"] for e in logs if e["log_level"] == "warning"] == [0]
    assert len(records) == 40 and tr.step == steps + 40 * EPISODE
    assert_whole(records, tr.horizon)


def test_cli_train_with_workers(ray_trainer: Trainer, tmp_path: Path) -> None:
    # the module's two actors hold both CPUs: give them back for the CLI's own workers, then restore
    ray_trainer.collector.close()
    try:
        cfg_path = tmp_path / "tiny.yaml"
        cfg: RunConfig = tiny(train__total_steps=3 * 4 * EPISODE)
        cfg_path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
        out = tmp_path / "run"
        r = CliRunner().invoke(
            app, ["train", "-c", str(cfg_path), "-o", str(out), "--workers", "2", "--no-progress"]
        )
        assert r.exit_code == 0, r.output
        assert (out / "checkpoint.pt").is_file() and (out / "policy.pt").is_file()
        assert "ray rollout workers ready" in r.stderr
        assert ray.is_initialized()  # joined the session it found, and left it running
    finally:
        from agents.training.distributed import RayCollector

        structlog.reset_defaults()
        ray_trainer.collector = RayCollector(ray_trainer.cfg.env, "moss", ray_trainer.policy.spec(), 2)

    r = CliRunner().invoke(
        app, ["train", "-c", str(cfg_path), "-o", str(tmp_path / "x"), "--ray-address", "auto"]
    )
    assert r.exit_code == 2 and "--workers" in r.stderr


# -- two nodes (slow) --------------------------------------------------------------------------------------
@pytest.mark.slow
def test_two_node_cluster_spreads_workers(tmp_path: Path) -> None:
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()  # (the module's local instance, when run with the default tier)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        tr = Trainer(tiny(), tmp_path, workers=2, ray_address=cluster.address)
        try:
            nodes = [p["node_id"] for p in tr.collector.placement]
            assert len(set(nodes)) == 2, nodes
            records = tr.collect(6, random=False)
            assert_whole(records, tr.horizon)
        finally:
            tr.close()
        assert not ray.is_initialized()  # it joined, so it disconnects
    finally:
        cluster.shutdown()
