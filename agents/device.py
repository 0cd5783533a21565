"""Where training and acting run: `auto | cpu | cuda | cuda:N`, resolved to a torch device, and the two
moves every part shares: host arrays to the device without a host sync, and any nest of tensors to CPU
copies (what checkpoints and buffer files hold, so they load on any device)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from agents.config import DEVICE_NAMES


class DeviceError(ValueError):
    """A device that is malformed or not present on this machine (the message says which and why)."""


def resolve_device(name: str | torch.device) -> torch.device:
    """`auto` (CUDA when present, else the CPU), `cpu`, `cuda` or `cuda:N`, checked against this machine."""
    if isinstance(name, torch.device):
        name = str(name)
    if not DEVICE_NAMES.fullmatch(name):
        raise DeviceError(f"device must be auto, cpu, cuda or cuda:N, got {name!r}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch build has no CUDA support" if torch.version.cuda is None else "no CUDA device is visible"
            raise DeviceError(f"device {name!r}: {why} (use cpu or auto; README.md, 'Training on a GPU', installs a CUDA build)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def host_to(x: np.ndarray | list | torch.Tensor, device: torch.device) -> torch.Tensor:
    """A host array (numpy, a list, a CPU tensor) on `device`, dtype kept (lists as numpy reads them). The
    copy to a GPU is queued without waiting for the device (a host-to-device copy from ordinary memory is
    staged before the call returns, so the source may change afterwards); on the CPU it is the array itself."""
    t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))
    return t.to(device, non_blocking=True)


def to_cpu(tree: Any) -> Any:
    """`tree` (dicts, lists and tuples of tensors and plain values) with every tensor a detached CPU copy."""
    if isinstance(tree, torch.Tensor):
        return tree.detach().to("cpu", copy=True)
    if isinstance(tree, dict):
        return {k: to_cpu(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(to_cpu(v) for v in tree)
    return tree
