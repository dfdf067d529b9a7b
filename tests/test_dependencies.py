"""The dependency floors, constraints.txt and the installed versions agree: every floor is a version
the suite has run with, and the environment the suite runs in is the one constraints.txt pins."""

from __future__ import annotations

import tomllib
from importlib.metadata import version

from conftest import ROOT
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version


def pinned() -> dict[str, str]:
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    pins = [line.split("==") for line in lines if line.strip() and not line.startswith("#")]
    assert all(len(p) == 2 for p in pins), "constraints.txt: one `name==version` a line"
    return {canonicalize_name(name): ver.strip() for name, ver in pins}


def requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = [r for group in project["optional-dependencies"].values() for r in group]
    return [Requirement(r) for r in project["dependencies"] + extras]


def test_every_requirement_has_a_floor_the_pinned_version_meets() -> None:
    pins = pinned()
    for req in requirements():
        name = canonicalize_name(req.name)
        floors = [s for s in req.specifier if s.operator == ">="]
        assert floors, f"{req}: no floor (>=) in pyproject.toml"
        assert name in pins, f"{req.name} is not pinned in constraints.txt"
        assert req.specifier.contains(pins[name]), f"{req}: constraints.txt pins {pins[name]}, below the floor"
        assert Version(floors[0].version) <= Version(pins[name])


def test_the_suite_runs_on_the_versions_constraints_txt_pins() -> None:
    pins = pinned()
    differ = {req.name: (version(req.name), pins[canonicalize_name(req.name)]) for req in requirements()
              if version(req.name) != pins[canonicalize_name(req.name)]}
    assert not differ, f"installed vs constraints.txt: {differ}; install with `pip install -c constraints.txt ...`"
