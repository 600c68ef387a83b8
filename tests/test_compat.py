"""The library versions the reaches into private internals (musicgen_lora/compat.py) were tested on: each installed
library is inside its tested range (one line naming the library, the range and the fix when not), requirements.txt
allows exactly those ranges, and a training run warns at its start about a version outside them."""

from __future__ import annotations

import logging

import pytest
from packaging.requirements import Requirement

import finetune_musicgen
from musicgen_lora import compat

from .conftest import ROOT


def test_installed_libraries_are_the_tested_versions():
    outside = compat.untested_versions()
    if outside:
        pytest.fail("; ".join(outside), pytrace=False)


def requirements() -> dict[str, Requirement]:
    lines = [line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    return {Requirement(line).name: Requirement(line) for line in lines if line and not line.startswith("-")}


@pytest.mark.parametrize("library", sorted(compat.TESTED_RANGES))
def test_requirements_cap_each_library_at_its_tested_range(library):
    lowest, first_untested = compat.TESTED_RANGES[library]
    allowed = requirements()[library].specifier
    assert str(allowed) in (f"<{first_untested},>={lowest}", f">={lowest},<{first_untested}"), (library, allowed)
    assert lowest in allowed and first_untested not in allowed
    assert compat.TESTED_ON[library] in allowed  # the versions last tested are inside it


def test_a_version_outside_the_range_is_one_line_naming_the_fix(monkeypatch, caplog):
    installed = {"transformers": "5.25.0", "peft": "0.23.0", "accelerate": "1.16.0", "datasets": "6.0.1"}
    monkeypatch.setattr(compat, "version", lambda library: installed[library])
    with caplog.at_level(logging.WARNING, logger="musicgen_lora.compat"):
        lines = compat.warn_about_untested_versions()
    assert lines == [
        "peft 0.23.0 is outside the tested range >=0.21,<0.23 (musicgen_lora/compat.py reaches into its internals); "
        "pip install 'peft>=0.21,<0.23'",
        "datasets 6.0.1 is outside the tested range >=5.2,<6 (musicgen_lora/compat.py reaches into its internals); "
        "pip install 'datasets>=5.2,<6'",
    ]
    assert [record.getMessage() for record in caplog.records] == [f"Untested library version: {line}" for line in lines]
    assert all("\n" not in line for line in lines)
    installed["peft"], installed["datasets"] = "0.21.0", "5.2.0"  # the lowest tested versions are inside
    assert compat.untested_versions() == []


def test_a_training_run_warns_at_its_start_and_goes_on(monkeypatch, tmp_path, capsys, caplog):
    installed = {**compat.TESTED_ON, "peft": "0.23.0"}
    monkeypatch.setattr(compat, "version", lambda library: installed[library])
    a_file = tmp_path / "out"
    a_file.write_text("not a folder")
    with caplog.at_level(logging.WARNING, logger="musicgen_lora.compat"), pytest.raises(SystemExit) as stopped:
        finetune_musicgen.main(["--model_name_or_path", "m", "--dataset_name", "d", "--output_dir", str(a_file)])
    (warning,) = [record.getMessage() for record in caplog.records if record.name == "musicgen_lora.compat"]
    assert warning.startswith("Untested library version: peft 0.23.0 is outside the tested range >=0.21,<0.23")
    lines = capsys.readouterr().err.strip().splitlines()
    # it went on to the run's own checks, which stop this one
    assert stopped.value.code == 2 and lines[-1].startswith(f"error: output_dir '{a_file}' is a file")
