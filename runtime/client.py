"""`runtime client`: a simulator that steps a local env and asks a `runtime serve` server for every action.

`Client` is a small DEALER client of protocol v1 (one request at a time, matched by `id`, with a receive
timeout so it never hangs on a dead server). `drive` runs episodes the way `runtime eval` does (episode i:
reset seed `seed + i`, task `i mod n_tasks`), with env settings defaulting to the checkpoint's (from
`hello`), and optionally records a scenario log for `runtime replay`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from runtime import protocol as P


class ClientError(RuntimeError):
    """The server could not be reached, or refused a request (`code` is the protocol error code)."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class Client:
    def __init__(
        self, address: str, timeout_s: float = 5.0, binary: bool = False, context: zmq.Context | None = None
    ):
        self.address, self.timeout_ms, self.binary = address, int(timeout_s * 1000), binary
        self.sock = (context or zmq.Context.instance()).socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        try:
            self.sock.connect(address)
        except zmq.ZMQError as e:
            self.sock.close()
            raise ClientError(f"cannot connect to {address!r}: {e}") from None
        self._ids = itertools.count(1)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send one request and wait for its reply; ClientError on timeout or an error reply."""
        rid = next(self._ids)
        self.sock.send(P.pack(P.request(op, rid, self.binary, **fields)))
        while True:
            if not self.sock.poll(self.timeout_ms, zmq.POLLIN):
                raise ClientError(
                    f"no reply from {self.address} within {self.timeout_ms / 1000:g} s (is `runtime serve` running there?)"
                )
            reply = P.unpack(self.sock.recv())
            if isinstance(reply, dict) and reply.get("id") == rid:
                break  # replies to earlier, timed-out requests are skipped
            if isinstance(reply, dict) and "id" not in reply and reply.get("ok") is False:
                break  # refused before it was decoded (e.g. frame_too_large): the reply cannot carry our id
        if not reply.get("ok"):
            err = reply.get("error") or {}
            raise ClientError(
                f"server refused {op}: {err.get('code')}: {err.get('message')}", err.get("code")
            )
        for k in ("action", "belief", "task_estimate"):
            if k in reply:
                reply[k] = P.decode_vector(reply[k])
        return reply

    def hello(self) -> dict[str, Any]:
        return self.call("hello")

    def stats(self) -> dict[str, Any]:
        return self.call("stats")

    def open(
        self, obs, deterministic: bool = True, session: str | None = None, task_vector=None
    ) -> dict[str, Any]:
        return self.call(
            "open", obs=_vec(obs), session=session, deterministic=deterministic, task_vector=_vec(task_vector)
        )

    def step(
        self, session: str, action, reward: float, next_obs, done: bool = False, task_vector=None
    ) -> dict[str, Any]:
        return self.call(
            "step",
            session=session,
            action=_vec(action),
            reward=float(reward),
            next_obs=_vec(next_obs),
            done=bool(done),
            task_vector=_vec(task_vector),
        )

    def reset(self, session: str, obs, keep_belief: bool = False, task_vector=None) -> dict[str, Any]:
        return self.call(
            "reset", session=session, obs=_vec(obs), keep_belief=keep_belief, task_vector=_vec(task_vector)
        )

    def close_session(self, session: str) -> dict[str, Any]:
        return self.call("close", session=session)


def _vec(x: Any) -> np.ndarray | None:
    return None if x is None else np.asarray(x, dtype=np.float32).ravel()


@dataclass
class EpisodeResult:
    episode: int
    seed: int
    task_id: str
    ret: float
    steps: int
    switches: list[dict[str, Any]]
    session: str
    actions: list[np.ndarray] = field(default_factory=list, repr=False)  # the served actions
    beliefs: list[np.ndarray] = field(default_factory=list, repr=False)  # [steps + 1] served beliefs

    def summary(self) -> dict[str, Any]:
        return {
            "episode": self.episode,
            "seed": self.seed,
            "task_id": self.task_id,
            "return": self.ret,
            "steps": self.steps,
            "switches": self.switches,
            "session": self.session,
        }


def env_settings(hello: dict[str, Any], env_id: str | None = None, **overrides: Any) -> dict[str, Any]:
    """The env to simulate: the checkpoint's env config (from `hello`), with the given overrides (None: keep)."""
    cfg = dict(hello.get("env") or {})
    ck_id = cfg.get("id") or (hello.get("checkpoint") or {}).get("env_id")
    out = {
        "id": env_id or ck_id,
        "task_seed": int(cfg.get("task_seed") or 0),
        "max_episode_steps": cfg.get("max_episode_steps"),
        "nonstationary": cfg.get("nonstationary"),
        "interval": cfg.get("interval", 100),
        "p": cfg.get("p", 0.5),
        "min_dwell": cfg.get("min_dwell"),
        "kwargs": dict(cfg.get("kwargs") or {}) if (env_id in (None, ck_id)) else {},
    }
    out.update({k: v for k, v in overrides.items() if v is not None})
    if out["nonstationary"] == "none":
        out["nonstationary"] = None
    if not out["id"]:
        raise ClientError("the checkpoint names no env id; pass --env")
    return out


def make_env(settings: dict[str, Any], split: str):
    import envs

    ns = settings["nonstationary"]
    return envs.make(
        settings["id"],
        split=split,
        seed=settings["task_seed"],
        nonstationary=ns,
        max_episode_steps=settings["max_episode_steps"],
        nonstationary_kwargs={
            "interval": settings["interval"],
            "p": settings["p"],
            "min_dwell": settings["min_dwell"],
        }
        if ns
        else None,
        **settings["kwargs"],
    )


def drive(
    client: Client,
    settings: dict[str, Any],
    split: str = "test",
    episodes: int = 1,
    seed: int = 10_000,
    record: str | Path | None = None,
    deterministic: bool = True,
    hello: dict[str, Any] | None = None,
) -> list[EpisodeResult]:
    """Run `episodes` episodes against the server (one session, `reset` between episodes, closed at the end)."""
    hello = hello or client.hello()
    env = make_env(settings, split)
    obs_dim, act_dim = int(np.prod(env.observation_space.shape)), int(np.prod(env.action_space.shape))
    if (obs_dim, act_dim) != (hello["obs_dim"], hello["action_dim"]):
        env.close()
        raise ClientError(
            f"env {settings['id']} has obs/action sizes ({obs_dim}, {act_dim}) but the served checkpoint expects "
            f"({hello['obs_dim']}, {hello['action_dim']})"
        )
    oracle = bool(hello.get("needs_task_vector"))
    n_tasks = len(env.unwrapped.tasks(split))
    writer = None
    if record is not None:
        from envs.scenario import ScenarioWriter

        meta = {
            "source": "runtime client",
            "server": client.address,
            "algorithm": hello.get("algorithm"),
            "checkpoint_sha256": (hello.get("checkpoint") or {}).get("sha256"),
            "split": split,
            "seed": seed,
            **{k: v for k, v in settings.items() if k not in ("id", "kwargs")},
        }
        writer = ScenarioWriter(record, settings["id"], meta)
    results: list[EpisodeResult] = []
    session: str | None = None
    try:
        for i in range(episodes):
            obs, info = env.reset(seed=seed + i, options={"task_index": i % n_tasks})
            tv = info["task_vector"] if oracle else None
            if session is None:
                r = client.open(obs, deterministic=deterministic, task_vector=tv)
                session = r["session"]
            else:
                r = client.reset(session, obs, task_vector=tv)
            res = EpisodeResult(i, seed + i, info["task_id"], 0.0, 0, [], session, beliefs=[r["belief"]])
            done, t = False, 0
            while not done:
                action = r["action"]
                next_obs, reward, terminated, truncated, info = env.step(action)
                done = bool(terminated or truncated)
                switch = info.get("task_switch")
                if switch is not None:
                    res.switches.append(dict(switch))
                if writer is not None:
                    writer.write_transition(
                        session=session,
                        episode=i,
                        t=t,
                        task_id=info["task_id"],
                        obs=obs,
                        action=action,
                        reward=reward,
                        next_obs=next_obs,
                        terminated=bool(terminated),
                        truncated=bool(truncated),
                        switch=switch,
                        task_vector=info.get("task_vector"),
                    )
                r = client.step(
                    session,
                    action,
                    float(reward),
                    next_obs,
                    done=done,
                    task_vector=info["task_vector"] if oracle else None,
                )
                res.actions.append(action)
                res.beliefs.append(r["belief"])
                res.ret += float(reward)
                obs, t = next_obs, t + 1
            res.steps = t
            results.append(res)
        if session is not None:
            client.close_session(session)
    finally:
        env.close()
        if writer is not None:
            writer.close()
    return results
