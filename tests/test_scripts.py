"""Every script under scripts/ still imports: a module it names that moves or goes breaks here, not on its next run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = sorted((ROOT / "scripts").rglob("*.py"))

# Loads each script as a module (its main() stays behind ``if __name__ == "__main__"``), all in one process.
LOAD = """
import importlib.util, sys
for i, path in enumerate(sys.argv[1:]):
    spec = importlib.util.spec_from_file_location(f"script_{i}", path)
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
"""


def test_every_script_imports() -> None:
    assert SCRIPTS, "no scripts found"
    out = subprocess.run([sys.executable, "-c", LOAD, *map(str, SCRIPTS)], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
