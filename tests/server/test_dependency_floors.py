"""Dependency floors above known advisories (issue 10 item 15): setup.cfg refuses the
vulnerable versions, and what is installed meets the floors."""
from __future__ import annotations

import configparser
import pathlib
from importlib import metadata

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

SETUP_CFG = pathlib.Path(__file__).resolve().parents[2] / "setup.cfg"
# name: (newest refused version, lowest accepted version)
FLOORS = {
    "tornado": ("6.5.9", "6.5.10"),  # the newest 6.5.x patch when the floor was set
    "ujson": ("5.9.0", "5.10.0"),
    "cryptography": ("43.0.3", "44.0.0"),
    "swagger-ui-bundle-v2": ("5.30.0", "5.31.0"),  # pinned: its files are checked
}


def _requirements() -> dict[str, Requirement]:
    parser = configparser.ConfigParser()
    parser.read(SETUP_CFG)
    lines = parser["options"]["install_requires"].splitlines()
    reqs = [Requirement(line.strip()) for line in lines
            if line.strip() and not line.strip().startswith("#")]
    return {req.name.lower(): req for req in reqs}


@pytest.mark.parametrize("name", sorted(FLOORS))
def test_setup_cfg_refuses_versions_below_the_floor(name: str) -> None:
    refused, accepted = FLOORS[name]
    spec = _requirements()[name].specifier
    assert Version(refused) not in spec and Version(accepted) in spec, str(spec)


@pytest.mark.parametrize("name", sorted(FLOORS))
def test_installed_versions_meet_the_floor(name: str) -> None:
    installed = Version(metadata.version(name))
    assert installed in _requirements()[name].specifier, installed
