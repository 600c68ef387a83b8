"""The oldest Python the project supports is said once and held in three places: the README ("Python 3.11+"),
pyproject's ``requires-python`` (pip refuses older interpreters) and ruff's ``target-version``; the interpreter
running this suite (CI's, at the floor) meets it. 3.10 is not supported: the tests use ``hashlib.file_digest``
(new in 3.11), and no Python 3.10 build of the pinned torch is at hand to prove otherwise."""

from __future__ import annotations

import re
import sys
import tomllib

from .conftest import ROOT


def readme_floor() -> tuple[int, int]:
    stated = set(re.findall(r"Python (3\.\d+)\+", (ROOT / "README.md").read_text(encoding="utf-8")))
    assert len(stated) == 1, f"the README states the Python floor {len(stated)} ways: {sorted(stated)}"
    major, minor = stated.pop().split(".")
    return int(major), int(minor)


def test_readme_pyproject_and_ruff_state_one_floor_and_this_interpreter_meets_it():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    floor = readme_floor()
    assert re.fullmatch(r">=\s*(\d+)\.(\d+)", pyproject["project"]["requires-python"]).groups() == tuple(
        map(str, floor)
    )
    assert pyproject["tool"]["ruff"]["target-version"] == f"py{floor[0]}{floor[1]}"
    assert sys.version_info[:2] >= floor
