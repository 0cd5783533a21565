"""Multi-task trajectory buffer: whole episodes, padded to the horizon, with per-step task ids.

Storage is a ring over episodes: obs/next_obs [E, T, O], action [E, T, A], reward/done/mask [E, T],
task [E, T] (index in the training split, per step so non-stationary switches are kept), task_vector
[E, T, V]. Derived per-episode tensors that an algorithm recomputes from its current encoder (MoSS:
hidden states and beliefs, [E, T+1, .]) live in `derived`. Samples: transitions (for SAC), windows (for
sequence encoders), and per-task draws (for contrastive pairs).

The storage lives on one device (the training device): a sampled batch is a gather on that device, with
no copy of transitions per batch. Indices are drawn on the host by a numpy Generator from host copies of
the episode lengths and first tasks (so a draw never waits for the device, and the CPU draws the same
numbers on any device); only the index arrays travel. `state_dict` holds CPU tensors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from agents.device import host_to


@dataclass
class Episode:
    """One finished episode, arrays of length L <= horizon."""

    obs: np.ndarray  # [L, O]
    action: np.ndarray  # [L, A]
    reward: np.ndarray  # [L]
    next_obs: np.ndarray  # [L, O]
    terminated: np.ndarray  # [L] bool
    task: np.ndarray  # [L] int
    task_vector: np.ndarray  # [L, V]

    def __len__(self) -> int:
        return len(self.reward)


class EpisodeBuffer:
    def __init__(
        self, capacity: int, horizon: int, obs_dim: int, action_dim: int, task_dim: int, device: str | torch.device = "cpu"
    ) -> None:
        self.capacity, self.horizon = capacity, horizon
        self.device = dev = torch.device(device)
        E, T = capacity, horizon
        self.obs = torch.zeros(E, T, obs_dim, device=dev)
        self.next_obs = torch.zeros(E, T, obs_dim, device=dev)
        self.action = torch.zeros(E, T, action_dim, device=dev)
        self.reward = torch.zeros(E, T, device=dev)
        self.done = torch.zeros(E, T, device=dev)
        self.mask = torch.zeros(E, T, dtype=torch.bool, device=dev)
        self.task = torch.full((E, T), -1, dtype=torch.long, device=dev)
        self.task_vector = torch.zeros(E, T, task_dim, device=dev)
        self.length = torch.zeros(E, dtype=torch.long, device=dev)
        # host copies of what index draws read: episode lengths and the task each episode began on
        self.lengths_host = np.zeros(E, np.int64)
        self.first_task_host = np.full(E, -1, np.int64)
        self.derived: dict[str, torch.Tensor] = {}
        self.n_added = 0  # episodes ever added
        self.steps_added = 0
        self._task_steps: tuple[int, TaskSteps] | None = None  # (n_added when built, the grouping)

    def __len__(self) -> int:
        return min(self.n_added, self.capacity)

    def add(self, ep: Episode) -> int:
        """Store `ep` (overwriting the oldest when full); returns its slot."""
        i = self.n_added % self.capacity
        L = len(ep)
        if not 0 < L <= self.horizon:
            raise ValueError(f"episode length {L} not in [1, {self.horizon}]")
        self.obs[i].zero_()
        self.next_obs[i].zero_()
        self.action[i].zero_()
        self.reward[i].zero_()
        self.done[i].zero_()
        self.mask[i] = False
        self.task[i] = -1
        self.obs[i, :L] = _host(ep.obs, torch.float32)
        self.next_obs[i, :L] = _host(ep.next_obs, torch.float32)
        self.action[i, :L] = _host(ep.action, torch.float32)
        self.reward[i, :L] = _host(ep.reward, torch.float32)
        self.done[i, :L] = _host(ep.terminated, torch.float32)
        self.mask[i, :L] = True
        self.task[i, :L] = _host(ep.task, torch.long)
        self.task_vector[i, :L] = _host(ep.task_vector, torch.float32)
        self.length[i] = L
        self.lengths_host[i], self.first_task_host[i] = L, int(ep.task[0])
        for v in self.derived.values():
            v[i].zero_()
        self.n_added += 1
        self.steps_added += L
        return i

    def extend(self, obs, action, reward, next_obs, done, length, task, task_vector) -> None:
        """Append E padded episodes at once (an empty buffer with room for them): obs/next_obs [E, T, O],
        action [E, T, A], reward/done [E, T], length [E], task [E] (the task of the whole episode),
        task_vector [E, V]. The same contents as E calls of `add`, without a Python loop."""
        E, T = len(length), self.horizon
        if self.n_added or E > self.capacity:
            raise ValueError(f"extend fills an empty buffer of capacity >= {E} (has {self.n_added} episodes, capacity {self.capacity})")
        length = _host(length, torch.long)
        if (length < 1).any() or (length > T).any():
            raise ValueError(f"episode lengths must lie in [1, {T}]")
        # padded on the host, then one copy per field to the buffer's device
        mask = torch.arange(T, device="cpu").unsqueeze(0) < length.unsqueeze(1)  # [E, T]
        f = mask.float()
        task = _host(task, torch.long)
        self.obs[:E] = _host(obs, torch.float32) * f.unsqueeze(-1)
        self.next_obs[:E] = _host(next_obs, torch.float32) * f.unsqueeze(-1)
        self.action[:E] = _host(action, torch.float32) * f.unsqueeze(-1)
        self.reward[:E] = _host(reward, torch.float32) * f
        self.done[:E] = _host(done, torch.float32) * f
        self.mask[:E] = mask
        self.task[:E] = torch.where(mask, task.unsqueeze(1), -1)
        self.task_vector[:E] = _host(task_vector, torch.float32).unsqueeze(1) * f.unsqueeze(-1)
        self.length[:E] = length
        self.lengths_host[:E], self.first_task_host[:E] = length.numpy(), task.numpy()
        self.n_added, self.steps_added = E, int(length.sum())
        self._task_steps = None

    # -- sampling -----------------------------------------------------------------------------------
    def sample_steps(self, n: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """n uniform (episode, t) pairs over all stored valid steps (index tensors on the buffer's device)."""
        lengths = self.lengths_host[: len(self)]
        total = lengths.sum()
        flat = rng.integers(0, total, size=n)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        e = np.searchsorted(starts, flat, side="right") - 1
        t = flat - starts[e]
        return host_to(e, self.device), host_to(t, self.device)

    def sample_windows(
        self, n: int, width: int, rng: np.random.Generator, episodes: np.ndarray | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """n windows (episode, start) of `width` steps inside an episode (clipped to its length; use `mask`)."""
        e = episodes if episodes is not None else rng.integers(0, len(self), size=n)
        lengths = self.lengths_host[e]
        t0 = (rng.random(len(e)) * np.maximum(lengths - width + 1, 1)).astype(np.int64)
        return host_to(e, self.device), host_to(t0, self.device)

    def window(self, name: str, e: torch.Tensor, t0: torch.Tensor, width: int) -> torch.Tensor:
        """Gather [n, width, ...] from the per-step tensor `name` (steps past the horizon are clamped; see mask)."""
        src = getattr(self, name) if hasattr(self, name) else self.derived[name]
        t = (t0.unsqueeze(1) + torch.arange(width, device=t0.device).unsqueeze(0)).clamp(max=src.shape[1] - 1)
        return src[e.unsqueeze(1), t]

    def window_mask(self, e: torch.Tensor, t0: torch.Tensor, width: int) -> torch.Tensor:
        t = t0.unsqueeze(1) + torch.arange(width, device=t0.device).unsqueeze(0)
        return (t < self.length[e].unsqueeze(1)) & (t < self.horizon)

    def task_steps(self) -> TaskSteps:
        """The stored steps grouped by task; rebuilt only after episodes were added."""
        if self._task_steps is None or self._task_steps[0] != self.n_added:
            self._task_steps = (self.n_added, TaskSteps(self))
        return self._task_steps[1]

    def episodes_by_task(self) -> dict[int, np.ndarray]:
        """Training-task index -> stored episodes that began on it (numpy index arrays, from the host copy)."""
        first = self.first_task_host[: len(self)]
        return {int(k): np.flatnonzero(first == k) for k in np.unique(first)}

    # -- save/restore (resuming training) ------------------------------------------------------------
    def state_dict(self) -> dict[str, object]:
        """The stored episodes as CPU tensors (a buffer file loads on any device)."""
        n = len(self)
        return {"n_added": self.n_added, "steps_added": self.steps_added, **{k: getattr(self, k)[:n].to("cpu", copy=True) for k in STORED}}

    def load_state_dict(self, sd: dict) -> None:
        n = sd["length"].shape[0]
        for k in STORED:
            getattr(self, k)[:n] = sd[k]
        self.lengths_host[:n] = sd["length"].cpu().numpy()
        self.first_task_host[:n] = sd["task"][:, 0].cpu().numpy()
        self.n_added, self.steps_added = int(sd["n_added"]), int(sd["steps_added"])
        self._task_steps = None


STORED = ("obs", "next_obs", "action", "reward", "done", "mask", "task", "task_vector", "length")


def _host(x, dtype: torch.dtype) -> torch.Tensor:
    """A numpy array or list as a CPU tensor of `dtype` (copied into the device storage by the caller)."""
    return torch.as_tensor(x, dtype=dtype, device="cpu")


class TaskSteps:
    """Every stored valid step (episode, t), grouped by the task in force at that step: on the buffer's
    device, built once per change of the buffer; draws check their tasks against a host copy of the counts."""

    def __init__(self, buffer: EpisodeBuffer) -> None:
        n = len(buffer)
        e, t = buffer.mask[:n].nonzero(as_tuple=True)
        task = buffer.task[:n][e, t]
        order = torch.argsort(task, stable=True)
        self.e, self.t, task = e[order], t[order], task[order]  # flat, sorted by task
        keys, counts = torch.unique_consecutive(task, return_counts=True)
        starts = torch.cumsum(counts, 0) - counts
        self.groups = {
            int(k): (self.e[s : s + c], self.t[s : s + c])
            for k, s, c in zip(keys.tolist(), starts.tolist(), counts.tolist(), strict=True)
        }
        # dense lookup by task index (tasks absent from the buffer have count 0)
        size = int(keys.max()) + 1 if len(keys) else 0
        self.start = torch.zeros(size, dtype=torch.long, device=keys.device).index_copy_(0, keys, starts)
        self.count = torch.zeros(size, dtype=torch.long, device=keys.device).index_copy_(0, keys, counts)
        self.count_host = self.count.cpu().numpy()

    def sample(self, tasks: list[int], n: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """n steps of each task, with replacement: (episode, t), each [len(tasks), n]."""
        return self.sample_like(np.asarray(tasks, dtype=np.int64), n, rng)

    def sample_like(self, labels: np.ndarray | torch.Tensor, n: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """For every entry of `labels` [...] (task indices stored in the buffer; best on the host, where they
        are checked), n steps of that task, with replacement, in one vectorised draw: (episode, t), each
        [..., n], on the buffer's device."""
        if not len(self.count_host):
            raise ValueError("the buffer holds no steps")
        host = labels.cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
        known = (host >= 0) & (host < len(self.count_host))
        missing = ~known | (self.count_host[np.where(known, host, 0)] == 0)
        if missing.any():
            raise ValueError(f"tasks {sorted(set(host[missing].tolist()))} have no stored step")
        lab = host_to(host, self.e.device)
        count = self.count[lab].unsqueeze(-1)
        u = host_to(rng.random((*host.shape, n)), self.e.device)  # float64, as numpy draws it
        j = self.start[lab].unsqueeze(-1) + torch.minimum((u * count).long(), count - 1)
        return self.e[j], self.t[j]
