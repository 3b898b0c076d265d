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


def test_the_cold_run_record_reads_the_clones_metadata_and_compares_tables(tmp_path, monkeypatch):
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("make_all_cold", ROOT / "scripts" / "benchmarks" / "make_all_cold.py")
    cold = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cold)
    out = cold.results_dir(tmp_path, "smoke")
    (out / "tables").mkdir(parents=True)
    (out / "run_metadata.json").write_text(json.dumps({"machine": "x86_64, 2 CPU cores, cpu", "wall_s": {"00_a": 1.5, "01_b": 2.0},
                                                        "decoded": {"00_a": 3, "01_b": 0}}))
    reference = tmp_path / "golden"
    reference.mkdir()
    (reference / "same.csv").write_text("a\n1\n")
    (reference / "other.csv").write_text("a\n2\n")
    (out / "tables" / "same.csv").write_text("a\n1\n")
    (out / "tables" / "other.csv").write_text("a\n3\n")
    monkeypatch.setattr(cold, "ROOT", tmp_path)
    monkeypatch.setitem(cold.REFERENCE, "smoke", reference)
    record = cold.summary(tmp_path, "smoke", 12.34, "abc1234")
    assert record["notebooks_s"] == 3.5 and record["make_all_wall_s"] == 12.3 and record["decoded"] == {"00_a": 3, "01_b": 0}
    assert record["tables_equal_committed"] == {"reference": "golden", "tables": 2, "differ": ["other.csv"]}
