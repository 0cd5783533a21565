"""A served agent behind `agents.evaluation.metaworld_agent.MetaWorldAgent`: one `runtime serve` session per env.

Each row's call maps to one request, whose reply carries the action for the new observation:
NEW -> `open` (first time) or `reset` (the prior again); STEP -> `step` with the held transition;
HOLD -> `reset` with `keep_belief` (the protocol's way to act on an observation without a transition: the
session's belief stays, only its step counter and last observation restart).
"""

from __future__ import annotations

import numpy as np

from agents.evaluation.metaworld_agent import Mode
from runtime.client import Client, ClientError


class ServedBackend:
    """Beliefs held by a server: sessions opened on the first observation, closed by `close()`."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.hello = client.hello()
        self.needs_task_vector = bool(self.hello["needs_task_vector"])
        self.sessions: list[str | None] = []

    def actions(
        self, obs: np.ndarray, mode: np.ndarray, action: np.ndarray | None, reward: np.ndarray | None, task: np.ndarray | None
    ) -> np.ndarray:
        if len(self.sessions) != len(obs):
            self.close()
            self.sessions = [None] * len(obs)
        out = []
        for j, m in enumerate(mode):
            tv = None if task is None else task[j]
            sid = self.sessions[j]
            if sid is None:
                reply = self.client.open(obs[j], task_vector=tv)
                self.sessions[j] = reply["session"]
            elif m == Mode.STEP:
                reply = self.client.step(sid, action[j], float(reward[j]), obs[j], task_vector=tv)  # type: ignore[index]
            else:
                reply = self.client.reset(sid, obs[j], keep_belief=m == Mode.HOLD, task_vector=tv)
            out.append(reply["action"])
        return np.stack(out).astype(np.float64)

    def close(self) -> None:
        for sid in self.sessions:
            if sid is not None:
                try:
                    self.client.close_session(sid)
                except ClientError:
                    pass  # evicted or gone with a restarted server: nothing left to free
        self.sessions = []
