"""The front door's links: every relative link in README.md, docs/*.md and scripts/README.md names a file that
exists, and an anchor names a heading of that file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", ROOT / "scripts" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", flags=re.M | re.S)


def links(page: Path) -> list[str]:
    """Relative link targets of a markdown page (code blocks and inline code left out)."""
    text = re.sub(r"`[^`\n]*`", "", FENCE.sub("", page.read_text(encoding="utf-8")))
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t)]


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    heads = re.findall(r"^#+\s+(.*?)\s*$", FENCE.sub("", page.read_text(encoding="utf-8")), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in heads}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for target in links(page):
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading #{anchor} in {dest.relative_to(ROOT)}")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


def test_the_readme_stays_short() -> None:
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 150


def test_the_link_check_can_fail(tmp_path: Path) -> None:
    page = tmp_path / "x.md"
    page.write_text("# Top\n[a](missing.md) [b](#top) [c](https://example.org) `[d](nowhere.md)`\n")
    assert links(page) == ["missing.md", "#top"] and "top" in anchors(page)


def test_every_script_is_listed_in_scripts_readme() -> None:
    listed = (ROOT / "scripts" / "README.md").read_text(encoding="utf-8")
    missing = [str(p.relative_to(ROOT)) for p in sorted((ROOT / "scripts").rglob("*.py")) if f"`{p.name}`" not in listed]
    assert not missing, f"scripts/README.md does not list {missing}"


def test_every_named_script_exists() -> None:
    """A ``scripts/...py`` path named in the docs, the Makefile, the package, the profiles or the tests exists."""
    sources = [ROOT / "Makefile", ROOT / "pyproject.toml", ROOT / "data" / "README.md", *PAGES]
    for folder, pattern in (("hagstudy", "*.py"), ("configs", "*.yaml"), ("tests", "*.py"), ("scripts", "*.py")):
        sources += sorted((ROOT / folder).rglob(pattern))
    stale = sorted({f"{src.relative_to(ROOT)}: {m}" for src in sources
                    for m in re.findall(r"scripts/[\w/]+\.py", src.read_text(encoding="utf-8"))
                    if not (ROOT / m).exists()})
    assert not stale, "named scripts that do not exist: " + "; ".join(stale)
