"""Same seed, same numbers: short MoSS, TCL-PEARL, FOCAL (with BRAC) and grid-filter runs on the CPU end
with the weights and metrics recorded in tests/data/training_reference.json (written by this file run as a
script: `python tests/test_training_reference.py --write`, only when a change is meant to move them).

A fingerprint is, per policy tensor, the sum and the sum of squares of its entries after training, plus
the last epoch's losses and the last evaluation's mean return."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_focal import offline_config  # noqa: E402
from test_pearl import tiny as tiny_pearl  # noqa: E402
from test_training import tiny  # noqa: E402

from agents.config import parse_config  # noqa: E402
from agents.training.trainer import Trainer  # noqa: E402

REFERENCE = Path(__file__).resolve().parent / "data" / "training_reference.json"
CASES = ("moss", "tcl", "focal", "gridfilter")


def config(case: str, tmp: Path) -> Any:
    if case == "moss":
        return tiny("moss")
    if case == "tcl":
        return tiny_pearl("tcl")
    if case == "focal":
        return parse_config(offline_config(tmp, "focal", brac_strength=1.0))
    raw = tiny("oracle").model_dump(mode="json")
    raw.update(algorithm="gridfilter", gridfilter={"grid": 4, "hidden": 8, "batch_size": 4, "decoder": "translation", "isotropic": True, "grad_samples": 4})
    raw["train"]["encoder_updates"] = 3
    return parse_config(raw)


def fingerprint(case: str) -> dict[str, Any]:
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(config(case, Path(tmp)), Path(tmp) / "run")
        out = trainer.train()
        last = [r for r in trainer.history if r["kind"] == "epoch"][-1]
        weights = {k: [float(v.double().sum()), float((v.double() ** 2).sum())] for k, v in trainer.policy.state_dict().items() if v.is_floating_point()}
        losses = {k: v for k, v in last.items() if k.endswith("loss") or k in ("q", "alpha", "filter_nll")}
        return {"weights": weights, "losses": losses, "eval_return": out["last_eval"]["mean_return"]}


@pytest.mark.parametrize("case", CASES)
def test_same_seed_same_numbers(case: str) -> None:
    want, got = json.loads(REFERENCE.read_text())[case], fingerprint(case)
    assert got["weights"].keys() == want["weights"].keys()
    for k, w in want["weights"].items():
        np.testing.assert_allclose(got["weights"][k], w, rtol=1e-4, atol=1e-5, err_msg=k)
    assert got["losses"].keys() == want["losses"].keys()
    np.testing.assert_allclose([got["losses"][k] for k in want["losses"]], list(want["losses"].values()), rtol=1e-3, atol=1e-4)
    assert got["eval_return"] == pytest.approx(want["eval_return"], rel=1e-3, abs=1e-3)


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    REFERENCE.write_text(json.dumps({c: fingerprint(c) for c in CASES}, indent=1) + "\n")
    print(f"wrote {REFERENCE}")
