"""Dead-code check: vulture over the package, scripts, tests and the notebooks' code cells.

Notebooks call most of the package, so their code cells are extracted into a temporary folder first
(without IPython magics); names used only by frameworks are listed in scripts/vulture_whitelist.py.
Exit 0 when nothing is reported, 1 otherwise (what vulture printed says where).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def notebook_sources(folder: Path) -> None:
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
        code = "\n\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        lines = [line for line in code.splitlines() if not line.lstrip().startswith(("%", "!"))]
        (folder / f"{nb.stem}.py").write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        notebook_sources(Path(tmp))
        paths = [str(ROOT / p) for p in ("hagstudy", "scripts", "tests")] + [tmp]
        cmd = [sys.executable, "-m", "vulture", *paths, "--min-confidence", "60"]
        return subprocess.run(cmd).returncode and 1


if __name__ == "__main__":
    sys.exit(main())
