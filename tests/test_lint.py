"""Lint and dead code: ruff (pyflakes + import order) and vulture over package, scripts, tests, notebooks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True)


def notebook_sources(folder: Path) -> None:
    """Each notebook's code cells as one ``.py`` file (IPython magics dropped): notebooks call most of the package."""
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
        code = "\n\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        lines = [line for line in code.splitlines() if not line.lstrip().startswith(("%", "!"))]
        (folder / f"{nb.stem}.py").write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_ruff_is_clean() -> None:
    out = run("-m", "ruff", "check", "hagstudy", "tests", "scripts")
    assert out.returncode == 0, out.stdout + out.stderr


def test_no_dead_code(tmp_path: Path) -> None:
    """Vulture over the package, scripts, tests (with ``tests/vulture_whitelist.py``: names only frameworks use)
    and the notebooks' code cells."""
    notebook_sources(tmp_path)
    out = run("-m", "vulture", *(str(ROOT / p) for p in ("hagstudy", "scripts", "tests")), str(tmp_path),
              "--min-confidence", "60")
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_dead_code_check_can_fail(tmp_path: Path) -> None:
    (tmp_path / "mod.py").write_text("def used():\n    return 1\n\n\ndef forgotten():\n    return 2\n\n\nused()\n")
    out = run("-m", "vulture", str(tmp_path), "--min-confidence", "60")
    assert out.returncode != 0 and "forgotten" in out.stdout and "'used'" not in out.stdout


def test_config_imports_no_task_module() -> None:
    code = "import hagstudy.config, sys; assert 'hagstudy.tasks' not in sys.modules"
    out = run("-c", code)
    assert out.returncode == 0, out.stderr
