"""One source of truth for the environment: environment.yml mirrors pyproject.toml's exact pins."""

import re
import tomllib

import yaml

from hagstudy.config import repo_root


def test_environment_yml_matches_pyproject_pins():
    root = repo_root()
    deps = tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((root / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert sorted(deps) == sorted(pip)
    assert all(re.fullmatch(r"[A-Za-z0-9_.\-]+==[0-9][0-9A-Za-z.+]*", d) for d in deps), "every pin is exact"
    assert "torch==2.13.0" in deps


def test_ci_calls_the_readme_test_command():
    root = repo_root()
    assert "make test" in (root / ".ci" / "run").read_text()
    readme = (root / "README.md").read_text()
    assert "make all" in readme and "make test" in readme
