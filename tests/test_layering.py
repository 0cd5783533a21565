"""Imports run one way: runtime -> agents -> envs, and inside agents parts -> policies -> evaluation ->
algorithms -> training. Read from the source (every import statement, function-level ones included)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LEARNING_PARTS = ("agents.parts.sac", "agents.parts.brac", "agents.parts.buffer", "agents.parts.contrastive")


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def imports(path: Path) -> set[str]:
    """Every module `path` imports (absolute names; relative imports are not used in this project)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            assert node.level == 0, f"{path}: relative import"
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}  # `from agents import x` may import a module
    return out


SOURCES = {module_name(p): imports(p) for d in ("envs", "agents", "runtime") for p in sorted((ROOT / d).rglob("*.py"))}


def offenders(importer_prefix: str, forbidden: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{m} imports {i}"
        for m, imps in SOURCES.items()
        if m == importer_prefix or m.startswith(importer_prefix + ".")
        for i in imps
        if any(i == f or i.startswith(f + ".") for f in forbidden)
    )


SERVING_FORBIDS = ("agents.algorithms", "agents.training", "agents.evaluation", "tools", *LEARNING_PARTS)
RULES = [
    ("envs", ("agents", "runtime", "tools")),
    ("agents", ("runtime", "tools")),
    ("runtime", ("tools",)),
    ("agents.parts", ("agents.policies", "agents.evaluation", "agents.algorithms", "agents.training", "agents.checkpoint", "envs")),
    ("agents.policies", ("agents.evaluation", "agents.algorithms", "agents.training", "agents.checkpoint", "envs", *LEARNING_PARTS)),
    ("agents.checkpoint", ("agents.evaluation", "agents.algorithms", "agents.training", *LEARNING_PARTS)),
    ("agents.evaluation", ("agents.algorithms", "agents.training", *LEARNING_PARTS[:2])),
    ("agents.algorithms", ("agents.training", "agents.evaluation", "agents.checkpoint")),
    ("agents.device", ("agents.parts", "agents.policies", "agents.evaluation", "agents.algorithms", "agents.training", "agents.checkpoint", "envs")),
    ("agents.config", ("agents.parts", "agents.policies", "agents.evaluation", "agents.algorithms", "agents.training", "agents.checkpoint")),
    ("runtime.server", SERVING_FORBIDS),
    ("runtime.sessions", SERVING_FORBIDS),
    ("runtime.replay", SERVING_FORBIDS),
    ("runtime.client", ("agents",)),
    ("runtime.protocol", ("agents",)),
]


@pytest.mark.parametrize(("importer", "forbidden"), RULES, ids=[r[0] for r in RULES])
def test_no_import_runs_the_wrong_way(importer: str, forbidden: tuple[str, ...]) -> None:
    assert any(m == importer or m.startswith(importer + ".") for m in SOURCES), f"no module {importer}"
    assert offenders(importer, forbidden) == []


def test_the_checker_sees_a_wrong_way_import(tmp_path: Path) -> None:
    """The rule table is only as good as `imports`: a policy that imports SAC, even inside a function, is caught."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from agents.parts.sac import SAC\n    import runtime.cli\n")
    assert {"agents.parts.sac", "agents.parts.sac.SAC", "runtime.cli"} <= imports(bad)
    SOURCES["agents.policies.bad"] = imports(bad)
    try:
        assert offenders("agents.policies", LEARNING_PARTS) == ["agents.policies.bad imports agents.parts.sac", "agents.policies.bad imports agents.parts.sac.SAC"]
        assert offenders("agents", ("runtime",)) == ["agents.policies.bad imports runtime.cli"]
    finally:
        del SOURCES["agents.policies.bad"]
