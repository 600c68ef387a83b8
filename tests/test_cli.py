"""The ``musicgen-lora`` console script: every subcommand is the command it mirrors (same options, same output, same
exit codes, named as it was started), only the chosen command is imported, and the package builds as a wheel with
the script, every module and its data file."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile

import pytest
from packaging.requirements import Requirement

import finetune_musicgen
from musicgen_lora import __version__, cli
from musicgen_lora.errors import UserError
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
# the name each mirrored command gives itself in its usage line and errors
OWN_NAMES = {
    "train": "finetune_musicgen.py",
    "prepare": "python -m musicgen_lora.prepare",
    "generate": "python -m musicgen_lora.generate",
    "evaluate": "evaluate.py",
    "push": "python -m musicgen_lora.push",
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
        code, out, err = outcome(cli.main, [command, *argv], capsys)
        # the same output, naming itself as it was started (UC12: not "usage: finetune_musicgen.py", no error naming
        # "python -m musicgen_lora.generate")
        if argv == ["--help"]:
            assert out.startswith(f"usage: musicgen-lora {command} "), command
        else:
            assert OWN_NAMES[command] not in err, command
        # (argparse wraps the usage line by the name's length: compared word by word)
        named_back = tuple(text.replace(f"musicgen-lora {command}", OWN_NAMES[command]).split() for text in (out, err))
        assert (code, *named_back) == (mirrored[0], *(text.split() for text in mirrored[1:])), (command, argv)
    assert mirrored[0] == 2 and mirrored[2].count("\n") == 1 and mirrored[2].startswith("error: ")


def test_train_help_names_the_script_it_was_started_by(capsys):
    code, out, _ = outcome(cli.main, ["train", "--help"], capsys)
    assert code == 0 and out.startswith("usage: musicgen-lora train [CONFIG.json]")
    code, out, _ = outcome(finetune_musicgen.main, ["--help"], capsys)
    assert code == 0 and out.startswith("usage: finetune_musicgen.py [CONFIG.json]")


def test_debug_before_the_command_is_passed_on_to_it(capsys):
    code, _, err = outcome(cli.main, ["train", "--no_such_option", "1"], capsys)
    assert code == 2 and err.startswith("error: unknown option '--no_such_option'")
    with pytest.raises(UserError, match="unknown option '--no_such_option'"):  # --debug: the traceback, not a line
        cli.main(["--debug", "train", "--no_such_option", "1"])
    with pytest.raises(UserError, match="unknown command 'trian'"):  # the script's own errors too
        cli.main(["--debug", "trian"])


def test_the_script_imports_only_the_command_it_runs():
    """In a fresh interpreter (what is imported is under test): ``musicgen-lora --help`` and a refused command import
    no command module, and ``musicgen-lora push --help`` imports the push command but none of the others."""
    probe = (
        "import json, sys\n"
        "from musicgen_lora import cli\n"
        "for argv in (['--help'], ['trian'], ['push', '--help']):\n"
        "    try:\n"
        "        cli.main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "    print('MODULES', json.dumps(sorted(m for m in sys.modules if m.startswith('musicgen_lora'))))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    seen = [line.removeprefix("MODULES ") for line in done.stdout.splitlines() if line.startswith("MODULES ")]
    after_help, after_refusal, after_push = (set(json.loads(line)) for line in seen)
    commands = {command.module for command in cli.COMMANDS.values()}
    assert after_help == after_refusal == {"musicgen_lora", "musicgen_lora.cli", "musicgen_lora.errors"}
    assert "musicgen_lora.hub.cli" in after_push and not (commands - {"musicgen_lora.hub.cli"}) & after_push


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
