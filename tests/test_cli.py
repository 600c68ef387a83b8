"""The ``musicgen-lora`` console script: every subcommand is the command it mirrors (same options, same output, same
exit codes), and the package builds as a wheel with the script, every module and its data file."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile

import pytest
from packaging.requirements import Requirement

import finetune_musicgen
from musicgen_lora import __version__, cli
from musicgen_lora.evaluate import cli as evaluate_cli
from musicgen_lora.generate import cli as generate_cli
from musicgen_lora.hub import cli as push_cli
from musicgen_lora.prepare import cli as prepare_cli

from .conftest import ROOT

MIRRORED = {
    "train": finetune_musicgen.main,
    "prepare": prepare_cli.main,
    "generate": generate_cli.main,
    "evaluate": evaluate_cli.main,
    "push": push_cli.main,
}


def outcome(run, argv: list[str], capsys) -> tuple[object, str, str]:
    """(exit code, stdout, stderr) of a command's main."""
    try:
        run(argv)
        code = 0
    except SystemExit as stop:
        code = stop.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("command", sorted(MIRRORED))
def test_each_subcommand_is_the_command_it_mirrors(command, capsys):
    for argv in (["--help"], ["--no_such_option", "1"]):
        mirrored = outcome(MIRRORED[command], argv, capsys)
        via_script = outcome(cli.main, [command, *argv], capsys)
        assert via_script == mirrored, (command, argv)
    assert mirrored[0] == 2 and mirrored[2].count("\n") == 1 and mirrored[2].startswith("error: ")


def test_the_script_lists_every_command_and_refuses_unknown_ones(capsys):
    assert cli.main(["--help"]) == 0
    listed = capsys.readouterr().out
    assert all(f"  {name} " in listed for name in cli.COMMANDS)
    for argv, expected in (([], "no command given"), (["trian"], "unknown command 'trian'")):
        code, out, err = outcome(cli.main, argv, capsys)
        assert code == 2 and err.startswith(f"error: {expected}") and err.count("\n") == 1
    code, _, err = outcome(cli.main, ["demo", "--max_steps", "1"], capsys)
    assert code == 2 and "demo takes no options" in err


def test_a_finished_run_through_the_script_is_the_same_run(trained_run, capsys):
    result = cli.main(["train", *trained_run["argv"]])  # what the console script returns: its exit status
    assert result == 0
    again = finetune_musicgen.main(trained_run["argv"])
    assert again["already_finished"] and again["train"] == pytest.approx(trained_run["train"])


def test_the_package_builds_a_wheel_with_the_script_and_its_data(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "requirements.txt"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "musicgen_lora", source / "musicgen_lora", ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), "."],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = tmp_path.glob(f"musicgen_lora-{__version__}-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {str(p.relative_to(ROOT)) for p in (ROOT / "musicgen_lora").rglob("*.py")}
    assert modules <= names and "musicgen_lora/hub/card_template.md" in names
    assert "musicgen_lora/evaluate/report_template.html" in names  # report.html is rendered from it
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "musicgen-lora = musicgen_lora.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    in_wheel = {str(Requirement(line.split(":", 1)[1])) for line in metadata.splitlines() if "Requires-Dist" in line}
    lines = [line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    assert {str(Requirement(line)) for line in lines if line} <= in_wheel  # the install needs what requirements.txt has
