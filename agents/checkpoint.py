"""Checkpoint files (docs/architecture.md).

One torch file holding plain containers and tensors only, loaded with `weights_only=True` (a checkpoint
can never run code): a format tag and version, the algorithm, the resolved config, the env id and spaces,
the policy's spec and state dict, optional training state (optimisers, counters, RNG) for resuming,
training statistics, and optionally the task readout (the belief in task units, agents/parts/readout.py)
with its fit quality; files without one load and serve as before. Serving uses `load_checkpoint` + `build_policy`; it imports no training code.
Every tensor in the file is a CPU tensor, whichever device trained it; `build_policy` puts the policy on
the device asked for.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import pickle
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from agents.config import RENAMED_ALGORITHMS, ConfigError, did_nothing, migrate_stored_config
from agents.device import to_cpu
from agents.parts.readout import TaskReadout
from agents.policies import POLICIES, AgentPolicy

FORMAT = "metarl-checkpoint"
VERSION = 2  # 2: algorithm `filter` renamed `gridfilter`, configs hold their own algorithm's section only

#: policy settings that no longer exist, with the value at which each did nothing: a version-1 spec that
#: holds one at that value loads as before, any other value is refused
REMOVED_POLICY_SETTINGS: dict[str, dict[str, Any]] = {
    "moss": {"head_hidden": [], "acts_on": "belief", "embed_hidden": [], "normalize": False, "cell": "gru"},
    "gridfilter": {"mode": False, "min_sigma": 0.0, "probes": 0},
}


class CheckpointError(ValueError):
    """A file that is not a usable checkpoint (the message says why)."""


@dataclass
class Checkpoint:
    path: Path
    algorithm: str
    version: int
    config: dict[str, Any]
    env: dict[str, Any]
    policy_spec: dict[str, Any]
    policy_state: dict[str, torch.Tensor]
    training: dict[str, Any] | None
    stats: dict[str, Any]
    created: str
    sha256: str
    readout: dict[str, Any] | None = None  # TaskReadout.record(): spec, state, quality

    def summary(self) -> dict[str, Any]:
        n_params = sum(int(v.numel()) for v in self.policy_state.values())
        return {
            "path": str(self.path),
            "format": FORMAT,
            "version": self.version,
            "algorithm": self.algorithm,
            "env": self.env,
            "policy_spec": self.policy_spec,
            "policy_parameters": n_params,
            "resumable": self.training is not None,
            "stats": self.stats,
            "created": self.created,
            "sha256": self.sha256,
            "readout": {"spec": self.readout["spec"], "quality": self.readout["quality"]} if self.readout else None,
            "config": self.config,
        }


def save_checkpoint(
    path: str | Path,
    policy: AgentPolicy,
    config: dict[str, Any],
    env: dict[str, Any],
    stats: dict[str, Any],
    training: dict[str, Any] | None = None,
    readout: dict[str, Any] | None = None,
) -> Path:
    """`readout`: a `TaskReadout.record(...)`, or None. Every tensor is written as a CPU copy (the policy's,
    the training state's and the readout's), so the file loads on any device. Write atomically (temp file +
    rename), so an interrupted save never leaves a truncated checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "algorithm": policy.algorithm,
        "config": config,
        "env": env,
        "policy_spec": policy.spec(),
        "policy": to_cpu(policy.state_dict()),
        "training": to_cpu(training),
        "stats": stats,
        "readout": to_cpu(readout),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read and check a checkpoint; CheckpointError names what is wrong (missing, truncated, foreign, newer)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    # torch.save writes a zip archive; anything else (a truncated file loses the zip's central directory,
    # a text file, a plain pickle) is rejected here, since torch.load raises assorted errors on them
    # (OSError, KeyError, UnpicklingError, ...)
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or not a torch file: no zip archive)")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        lines = str(e).splitlines()
        why = next((ln.strip() for ln in lines if "Unsupported" in ln), lines[0] if lines else "")
        raise CheckpointError(f"{path}: refused: the file holds objects other than tensors and plain data ({why})") from None
    except Exception as e:  # any other failure to read is a damaged file
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or not a torch file): {msg}") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a {FORMAT} file (foreign torch file: no '{FORMAT}' format tag)")
    version = raw.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise CheckpointError(f"{path}: damaged checkpoint: no valid format version (got {version!r})")
    if version > VERSION:
        raise CheckpointError(
            f"{path}: checkpoint version {version} is newer than this runtime supports ({VERSION}); upgrade metarl-runtime"
        )
    missing = [k for k in ("algorithm", "config", "env", "policy_spec", "policy") if k not in raw]
    if missing:
        raise CheckpointError(f"{path}: damaged checkpoint, missing {missing}")
    algorithm = RENAMED_ALGORITHMS.get(raw["algorithm"], raw["algorithm"])
    if algorithm not in POLICIES:
        raise CheckpointError(f"{path}: unknown algorithm {raw['algorithm']!r} (known: {sorted(POLICIES)})")
    try:
        config = migrate_stored_config(raw["config"], str(path), resuming=False) if isinstance(raw["config"], dict) else raw["config"]
    except ConfigError as e:
        raise CheckpointError(str(e)) from None
    return Checkpoint(
        path=path,
        algorithm=algorithm,
        version=version,
        config=config,
        env=raw["env"],
        policy_spec=_current_spec(path, algorithm, raw["policy_spec"]),
        policy_state=raw["policy"],
        training=raw.get("training"),
        stats=raw.get("stats", {}),
        created=raw.get("created", ""),
        sha256=file_sha256(path),
        readout=raw.get("readout"),
    )


def _current_spec(path: Path, algorithm: str, spec: dict[str, Any]) -> dict[str, Any]:
    """`spec` without the settings that no longer exist (see REMOVED_POLICY_SETTINGS)."""
    spec = dict(spec)
    for key, off in REMOVED_POLICY_SETTINGS.get(algorithm, {}).items():
        if key in spec:
            value = spec.pop(key)
            if not did_nothing(value, off):
                raise CheckpointError(f"{path}: {algorithm} policy setting {key!r} was removed; this checkpoint sets it to {value!r}, which this version cannot serve")
    return spec


def build_policy(
    ckpt: Checkpoint, overrides: dict[str, Any] | None = None, device: str | torch.device = "cpu"
) -> AgentPolicy:
    """The checkpoint's policy in eval mode, weights loaded, on `device` (a torch device; see
    `agents.device.resolve_device` for names such as `auto`). `overrides` replace entries of its policy spec
    (acting-time settings such as the grid filter's `refine`); one that changes a weight's shape is refused
    like a damaged checkpoint."""
    cls = POLICIES[ckpt.algorithm]
    spec = dict(ckpt.policy_spec)
    # what the class takes now: a checkpoint older than a setting lacks it in its spec and runs its default
    known = set(spec) | (set(inspect.signature(cls.__init__).parameters) - {"self", "spaces"})
    unknown = sorted(set(overrides or {}) - known)
    if unknown:
        raise CheckpointError(f"{ckpt.path}: {ckpt.algorithm} policy has no setting {unknown}; its settings: {sorted(known)}")
    spec.update(overrides or {})
    try:
        policy = cls.from_spec(spec)
    except (TypeError, ValueError, KeyError) as e:
        raise CheckpointError(f"{ckpt.path}: cannot build the {ckpt.algorithm} policy from its spec {spec}: {e}") from None
    try:
        policy.load_state_dict(ckpt.policy_state)
    except RuntimeError as e:
        raise CheckpointError(f"{ckpt.path}: policy weights do not match its spec: {e}") from None
    return policy.to(device).eval()


def store_readout(ckpt: Checkpoint, readout: dict[str, Any], out: str | Path | None = None) -> Path:
    """Write `ckpt`'s file again with `readout` (a `TaskReadout.record(...)`) in place of its own, to `out`
    (default: the same path, replaced atomically). Everything else in the file is kept as it was."""
    raw = torch.load(ckpt.path, map_location="cpu", weights_only=True)
    raw["readout"] = readout
    path = Path(out) if out is not None else ckpt.path
    tmp = path.with_name(path.name + ".tmp")
    torch.save(raw, tmp)
    os.replace(tmp, path)
    return path


def build_readout(ckpt: Checkpoint) -> TaskReadout | None:
    """The checkpoint's task readout in eval mode, or None when it has none."""
    if not ckpt.readout:
        return None
    try:
        return TaskReadout.from_record(ckpt.readout)
    except (TypeError, ValueError, KeyError, RuntimeError) as e:
        raise CheckpointError(f"{ckpt.path}: damaged task readout: {e}") from None
