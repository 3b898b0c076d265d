"""Time a cold ``make all``: a fresh clone of HEAD, its own venv, an empty completion cache, no adapters.

``make bench-cold`` (``PROFILE=smoke`` for a few minutes' check). The clone runs ``make all FRESH=1`` and
nothing is shared with this checkout but pip's download cache, so the time is a new user's first run on
this machine (set-up included). Writes the notebooks' seconds and decode counts, the whole run's wall
time, the CPU, and whether the clone's tables equal the committed ones byte for byte (``results/tables``
for the default profile, ``tests/golden/smoke/tables`` for smoke) to ``results/benchmarks/make_all_cold.json``
(default profile) or ``artifacts/<profile>/make_all_cold.json``. Uncommitted changes are not in the clone.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = {"default": ROOT / "results" / "tables", "smoke": ROOT / "tests" / "golden" / "smoke" / "tables"}


def results_dir(clone: Path, profile: str) -> Path:
    """Where ``make all`` renders a profile (the Makefile's RESULTS)."""
    return clone / "results" if profile == "default" else clone / "artifacts" / profile / "results"


def cpu() -> str:
    """The CPU's model name and its bf16 matrix instructions (rates differ up to 3x between them)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), []))
    return f"{name} ({', '.join(f for f in ('amx_bf16', 'avx512_bf16') if f in flags) or 'no bf16 matrix instructions'})"


def tables_equal(found: Path, reference: Path | None) -> dict[str, Any]:
    """Which of the reference tables the run reproduced byte for byte."""
    if reference is None or not reference.is_dir():
        return {"reference": None}
    names = sorted(p.name for p in reference.glob("*.csv"))
    differ = [n for n in names if not (found / n).is_file() or (found / n).read_bytes() != (reference / n).read_bytes()]
    return {"reference": str(reference.relative_to(ROOT)), "tables": len(names), "differ": differ}


def summary(clone: Path, profile: str, wall_s: float, commit: str) -> dict[str, Any]:
    """The cold run's record, from the clone's run metadata."""
    out = results_dir(clone, profile)
    meta = json.loads((out / "run_metadata.json").read_text())
    return {
        "commit": commit,
        "profile": profile,
        "cpu": cpu(),
        "cores": meta.get("machine"),
        "make_all_wall_s": round(wall_s, 1),
        "wall_s": meta["wall_s"],
        "decoded": meta.get("decoded", {}),
        "notebooks_s": round(sum(meta["wall_s"].values()), 1),
        "tables_equal_committed": tables_equal(out / "tables", REFERENCE.get(profile)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="default")
    ap.add_argument("--keep", type=Path, default=None, help="clone here and keep it (default: a temporary folder, removed)")
    args = ap.parse_args()
    if subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout.strip():
        print("note: uncommitted changes are not in the clone", file=sys.stderr)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="cold-") as tmp:
        clone = args.keep or Path(tmp) / "clone"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        start = time.perf_counter()
        subprocess.run(["make", "all", "FRESH=1", f"PROFILE={args.profile}"], cwd=clone, check=True)
        record = summary(clone, args.profile, time.perf_counter() - start, commit)
    dest = ROOT / "results" / "benchmarks" if args.profile == "default" else ROOT / "artifacts" / args.profile
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "make_all_cold.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))
    print(f"wrote {dest / 'make_all_cold.json'}")


if __name__ == "__main__":
    main()
