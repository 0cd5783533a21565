"""The docs stand alone: every relative link (and its #anchor) resolves inside the repository, nothing
points outside it, and no text speaks of how the project was developed rather than what it does."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "tools").rglob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HISTORY = re.compile(
    r"\bsession \d+\b|\bsessions \d+\s*(-|to|and)\s*\d+\b|\bissue #?\d+|#\d+\b(?!\s*(px|steps))|\btargets? \d\b|\brun [a-h]\b"
    r"|_[de]\.yaml|results\.md",
    re.IGNORECASE,
)
OUTSIDE = re.compile(r"\.\./shared|\bdesign\.md|\benvs\.md|\balgorithms\.md|papers/\d{3}_", re.IGNORECASE)


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    s = re.sub(r"[`*_]", "", heading.strip().lower())
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def anchors(md: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", md.read_text(), flags=re.S)
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.*)$", text, re.M)}


def tracked_text_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    keep = (".py", ".md", ".yaml", ".yml", ".sh", ".toml", ".txt")
    return [ROOT / p for p in out if p.endswith(keep) or p.startswith(".ci/")]


@pytest.mark.parametrize("md", DOCS, ids=[str(p.relative_to(ROOT)) for p in DOCS])
def test_relative_links_resolve(md: Path) -> None:
    text = re.sub(r"```.*?```", "", md.read_text(), flags=re.S)
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):  # http(s):, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (md.parent / path).resolve() if path else md
        if not dest.exists():
            broken.append(target)
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(target)
    assert broken == []


def test_nothing_points_outside_the_repository_or_at_its_history() -> None:
    bad = []
    for p in tracked_text_files():
        if p.name == "test_docs.py":
            continue
        for n, line in enumerate(p.read_text(errors="replace").splitlines(), 1):
            if OUTSIDE.search(line) or HISTORY.search(line):
                bad.append(f"{p.relative_to(ROOT)}:{n}: {line.strip()[:100]}")
    assert bad == []


def test_the_checks_catch_what_they_are_for(tmp_path: Path) -> None:
    assert HISTORY.search("as measured in session 13") and HISTORY.search("see issue 3") and HISTORY.search("target 1 is met")
    assert OUTSIDE.search("details in ../shared/ENVS.md") and OUTSIDE.search("see design.md") and not HISTORY.search("256 sessions, p99 3 ms")
    assert slug("1. Non-stationary PointRobot (horizon 100)") == "1-non-stationary-pointrobot-horizon-100"
