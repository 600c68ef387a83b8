"""The bad-input catalogue: every command, given what users get wrong, answers with exit status 2 (130 after
Ctrl-C), one line naming the problem and the fix, no traceback, and leaves every earlier file in its output and data
folders byte-identical (the framework: tests/bad_input/world.py; the cases, as data: tests/bad_input/*_cases.py)."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import finetune_musicgen
from musicgen_lora import cli as console
from musicgen_lora.bench import suite as bench_suite
from musicgen_lora.config.parsing import parse_config
from musicgen_lora.demo import synth, tiny
from musicgen_lora.demo.tiny import build_tiny_musicgen
from musicgen_lora.evaluate import cli as evaluate_cli
from musicgen_lora.generate import cli as generate_cli
from musicgen_lora.hub import cli as push_cli
from musicgen_lora.prepare import cli as prepare_cli
from musicgen_lora.studio import __main__ as studio_cli
from musicgen_lora.train import plots
from musicgen_lora.train.checkpoints import is_complete
from musicgen_lora.train.output_dir import LOCK_NAME

from .bad_input.afternoon_cases import AFTERNOON_CASES
from .bad_input.data_cases import DATA_CASES
from .bad_input.dependency_cases import DEPENDENCY_CASES
from .bad_input.evaluate_cases import EVALUATE_CASES
from .bad_input.prepare_afternoon_cases import PREPARE_AFTERNOON_CASES
from .bad_input.tool_cases import TOOL_CASES
from .bad_input.train_cases import TRAIN_CASES
from .bad_input.world import Case, World, changed_files, check_failure, deny_read, run_case, tree_hashes
from .conftest import ROOT, base_argv, write_tone

MAINS = {
    "train": finetune_musicgen.main,
    "prepare": prepare_cli.main,
    "generate": generate_cli.main,
    "evaluate": evaluate_cli.main,
    "push": push_cli.main,
    "plots": plots.main,
    "tiny": tiny.main,
    "synth": synth.main,
    "studio": studio_cli.main,
    "bench": bench_suite.main,
    "musicgen-lora": console.main,
}
CASES: dict[str, Case] = {
    f"{case.command}: {name}": case
    for group in (
        TRAIN_CASES,
        DATA_CASES,
        PREPARE_AFTERNOON_CASES,
        DEPENDENCY_CASES,
        *TOOL_CASES,
        *AFTERNOON_CASES,
        EVALUATE_CASES,
    )
    for name, case in group.items()
}


@pytest.fixture(scope="module")
def other_base_checkpoint(tmp_path_factory, corpus_dir, data_cache_dir):
    """Made on first use: a complete checkpoint trained on a tiny MusicGen with another codebook size."""
    made: list[Path] = []

    def make() -> Path:
        if not made:
            root = tmp_path_factory.mktemp("other-base")
            model, processor = build_tiny_musicgen(seed=1, codebook_size=32)
            model.save_pretrained(root / "model")
            processor.save_pretrained(root / "model")
            quick = ["--max_steps", "1", "--save_strategy", "steps", "--save_steps", "1", "--max_train_samples", "2",
                     "--per_device_train_batch_size", "2"]  # fmt: skip
            finetune_musicgen.main(base_argv(root / "model", corpus_dir, root / "run", data_cache_dir) + quick)
            made.append(root / "run" / "checkpoint-1")
        return made[0]

    return make


@pytest.fixture
def make_world(monkeypatch, tiny_model_dir, corpus_dir, data_cache_dir, trained_run, other_base_checkpoint):
    """A case's World in a new folder (``folder``: a path that does not exist yet)."""

    def make(folder: Path) -> World:
        folder.mkdir()
        return World(
            tmp=folder, model=tiny_model_dir, shared_corpus=corpus_dir, cache=data_cache_dir,
            trained_run=Path(trained_run["output_dir"]), other_checkpoint_factory=other_base_checkpoint,
            monkeypatch=monkeypatch,
        )  # fmt: skip

    return make


@pytest.fixture(scope="module")
def shared_worlds(tmp_path_factory, tiny_model_dir, corpus_dir, data_cache_dir, trained_run, other_base_checkpoint):
    """The worlds that cases failing at parsing share (:attr:`Case.shared_world`), made on first use."""
    worlds: dict[str, World] = {}
    patch = pytest.MonkeyPatch()

    def get(name: str) -> World:
        if name not in worlds:
            folder = tmp_path_factory.mktemp(f"shared-{name}")
            worlds[name] = World(
                tmp=folder, model=tiny_model_dir, shared_corpus=corpus_dir, cache=data_cache_dir,
                trained_run=Path(trained_run["output_dir"]), other_checkpoint_factory=other_base_checkpoint,
                monkeypatch=patch,
            )  # fmt: skip
        return worlds[name]

    yield get
    patch.undo()


def never_reached(*args: object, **kwargs: object) -> None:
    """The studio's page builder and the benchmark suite in the catalogue: reaching them fails the case (it never
    blocks)."""
    raise AssertionError("the command got past every check (to the studio's page or the benchmark suite)")


@pytest.mark.parametrize(
    "name", [pytest.param(name, marks=pytest.mark.slow) if case.slow else name for name, case in CASES.items()]
)
def test_bad_input(name, tmp_path, monkeypatch, capsys, make_world, shared_worlds, tiny_model_dir, corpus_dir):
    case = CASES[name]
    world = shared_worlds(case.shared_world) if case.shared_world else make_world(tmp_path / "case")
    monkeypatch.chdir(world.tmp)
    # a case that got past every check would serve the studio's page until killed, or run the whole benchmark
    monkeypatch.setattr(studio_cli, "build_app", never_reached)
    monkeypatch.setattr(bench_suite, "run_suite", never_reached)
    with world.resources:
        watched = {"case": world.tmp, "model": tiny_model_dir, "corpus": corpus_dir}
        print(run_case(case, world, MAINS[case.command], capsys, watched))  # the messages: pytest -rP


# ------------------------------------------------------------------------------------------------ the real scripts

COMMAND_LINES = {
    "train": [sys.executable, str(ROOT / "finetune_musicgen.py")],
    "prepare": [sys.executable, "-m", "musicgen_lora.prepare"],
    "generate": [sys.executable, "-m", "musicgen_lora.generate"],
    "evaluate": [sys.executable, str(ROOT / "evaluate.py")],
    "push": [sys.executable, "-m", "musicgen_lora.push"],
    "plots": [sys.executable, "-m", "musicgen_lora.plots"],
    "tiny": [sys.executable, "-m", "musicgen_lora.tiny"],
    "synth": [sys.executable, "-m", "musicgen_lora.synth"],
    "studio": [sys.executable, "-m", "musicgen_lora.studio"],
    "bench": [sys.executable, "-m", "musicgen_lora.bench"],
    "musicgen-lora": [sys.executable, "-m", "musicgen_lora"],
}
# One case of each command, run as the user runs it (a process each, started together: the interpreter's start
# costs seconds, the cases themselves almost nothing).
SCRIPT_SAMPLE = [
    "train: config not JSON (trailing comma)", "prepare: prepare: CSV extra fields",
    "generate: earlier generations, no --overwrite", "evaluate: prompts not UTF-8", "push: offline",
    "musicgen-lora: unknown command",
]  # fmt: skip


def test_the_real_scripts_keep_the_promise(tmp_path, make_world):
    started = []
    for number, name in enumerate(SCRIPT_SAMPLE):
        case = CASES[name]
        world = make_world(tmp_path / f"case-{number}")
        argv = case.argv(world)
        before = tree_hashes(world.tmp)
        process = subprocess.Popen(
            [*COMMAND_LINES[case.command], *argv], cwd=world.tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"},
        )  # fmt: skip
        started.append((name, case, world, before, process))
    for name, case, world, before, process in started:
        out, err = process.communicate(timeout=300)
        print(name, "->", check_failure(process.returncode, out, err, case.code, case.expect))
        assert not changed_files(before, tree_hashes(world.tmp)), name


# ------------------------------------------------------------------------------------------------ Ctrl-C and SIGTERM


def _wait_for_line(process: subprocess.Popen, marker: str, timeout: float = 240.0) -> list[str]:
    """Read the process' stdout until a line holds ``marker`` (the lines read so far); fail after ``timeout``."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], deadline - time.monotonic())
        if not ready:
            break
        line = process.stdout.readline()
        if not line:  # the process ended without logging
            break
        lines.append(line)
        if marker in line:
            return lines
    process.kill()
    raise AssertionError(f"no line with {marker!r} within {timeout:g} s; got: {lines[-5:]}; {process.stderr.read()}")


@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM"])
def test_a_stop_signal_saves_a_checkpoint_that_resumes(signal_name, tmp_path, tiny_model_dir, corpus_dir,
                                                       data_cache_dir):  # fmt: skip
    """The real script, stopped while it trains: exit 130, one line naming the checkpoint and how to continue, no
    traceback; the checkpoint is complete and a resumed run continues from it."""
    out = tmp_path / "run"
    argv = base_argv(tiny_model_dir, corpus_dir, out, data_cache_dir) + [
        "--max_steps", "100000", "--save_strategy", "steps", "--save_steps", "100000", "--logging_steps", "1",
        "--max_train_samples", "4", "--per_device_train_batch_size", "4",
    ]  # fmt: skip
    process = subprocess.Popen(
        [*COMMAND_LINES["train"], *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    _wait_for_line(process, "'loss'")  # training has started: a step was logged
    process.send_signal(getattr(signal, signal_name))
    _, err = process.communicate(timeout=240)
    line = check_failure(process.returncode, "", err, 130, rf"stopped by {signal_name} at step \d+ of 100000")
    step = int(re.search(r"at step (\d+)", line).group(1))
    checkpoint = out / f"checkpoint-{step}"
    assert line.endswith(f"the checkpoint is '{checkpoint}': run the same command again to continue from it")
    assert is_complete(checkpoint)
    assert not (out / LOCK_NAME).exists()  # the lock is released: the same command can run again
    resumed = finetune_musicgen.main(argv[:-12] + [
        "--max_steps", str(step + 1), "--save_strategy", "no", "--logging_steps", "1", "--max_train_samples", "4",
        "--per_device_train_batch_size", "4", "--resume_from_checkpoint", "true",
    ])  # fmt: skip
    steps = [record["step"] for record in resumed["log_history"] if "loss" in record]
    assert steps[-1] == step + 1 and steps[:step] == list(range(1, step + 1))  # it continued, it did not restart


# ------------------------------------------------------------------------------------------- what the refusals keep


def test_help_shows_the_defaults_a_config_file_run_gets(tmp_path, capsys):
    config = tmp_path / "my-run.JSON"
    config.write_text(json.dumps({"model_name_or_path": "m", "dataset_name": "d", "output_dir": "o", "lora_r": 7}))
    with pytest.raises(SystemExit) as helped:
        finetune_musicgen.main([str(config), "--help"])
    assert helped.value.code == 0
    help_of = re.search(
        r"^  --lora_r LORA_R, --lora-r LORA_R\n\s+LoRA rank. \(default: (\d+)\)", capsys.readouterr().out, re.M
    )
    assert help_of is not None and help_of.group(1) == "7"


def test_json_false_turns_an_option_off_and_true_reads_as_the_command_line_writes_it(tmp_path):
    config = tmp_path / "config.json"
    values = {"model_name_or_path": "m", "dataset_name": "d", "output_dir": "o", "deepspeed": False,
              "resume_from_checkpoint": True, "accelerator_config": False}  # fmt: skip
    config.write_text(json.dumps(values))
    training = parse_config([str(config)]).training
    assert training.deepspeed is None and training.resume_from_checkpoint == "true"


def test_bom_and_repeated_identical_rows_are_accepted(tmp_path, data_cache_dir, tiny_model_dir, caplog):
    folder = tmp_path / "songs"
    write_tone(folder / "a.wav", 2.0, 220.0)
    write_tone(folder / "b.wav", 2.5, 330.0)
    rows = [{"file_name": "a.wav", "text": "low"}, {"file_name": "b.wav", "text": "high"}]
    text = "".join(json.dumps(row) + "\n" for row in [*rows, rows[0]])
    (folder / "metadata.jsonl").write_bytes(b"\xef\xbb\xbf" + text.encode())
    report = prepare_cli.main(
        base_argv(tiny_model_dir, folder, tmp_path / "out", data_cache_dir) + ["--min_duration_in_seconds", "1"]
    )
    assert report["splits"]["train"]["tracks"] == 2
    assert "lists 'a.wav' twice (lines 1 and 3): the repeat is ignored" in caplog.text


def test_a_permission_problem_fixed_is_not_remembered(tmp_path, data_cache_dir, tiny_model_dir, monkeypatch):
    """An unreadable file is skipped and named; once readable, the next preparation uses it (nothing cached)."""
    folder = tmp_path / "songs"
    write_tone(folder / "a.wav", 2.0, 220.0)
    write_tone(folder / "b.wav", 2.5, 330.0)
    argv = base_argv(tiny_model_dir, folder, tmp_path / "out", data_cache_dir) + ["--instance_prompt", "tone"]
    with monkeypatch.context() as denied:
        deny_read(folder / "b.wav", denied)
        first = prepare_cli.main(argv)
    (folder / "b.wav").chmod(0o644)
    second = prepare_cli.main(argv)
    assert first["splits"]["train"]["tracks"] == 1 and second["splits"]["train"]["tracks"] == 2
    assert first["splits"]["train"]["files"]["reasons"] == {"permission denied": 1}


def test_generate_overwrite_replaces_earlier_generations_once_it_succeeded(tmp_path, trained_run):
    out = tmp_path / "out"
    out.mkdir()
    for name in ("0.wav", "1.wav", "prompts.txt", "generation_config.json", "notes.md"):
        (out / name).write_text("earlier")
    generate_cli.main(["--adapter", trained_run["output_dir"], "--prompt", "lofi", "--duration", "0.1", "--out_dir",
                       str(out), "--overwrite"])  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == ["0.wav", "generation_config.json", "notes.md", "prompts.txt"]
    assert (out / "prompts.txt").read_text() == "0\tlofi\n" and (out / "notes.md").read_text() == "earlier"


def test_evaluate_overwrite_replaces_an_earlier_evaluation_once_it_succeeded(tmp_path, trained_run, tiny_model_dir):
    out = tmp_path / "eval"
    for name in ("metrics.json", "report.html", "base/7-1.wav", "final/7-1.png"):
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(json.dumps({"models": {"base": {}, "final": {}}}) if name == "metrics.json" else "x")
    (out / "best").mkdir()
    (out / "best" / "adapter_config.json").write_text("{}")  # not an evaluation's folder: never touched
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("lofi piano\n")
    evaluate_cli.main(["--base_model", str(tiny_model_dir), "--model", f"final={trained_run['output_dir']}",
                       "--prompts", str(prompts), "--duration", "0.5", "--num_samples", "1", "--skip_melody",
                       "--output_dir", str(out), "--overwrite"])  # fmt: skip
    assert not (out / "base" / "7-1.wav").exists() and not (out / "final" / "7-1.png").exists()  # nothing stale
    assert (out / "best" / "adapter_config.json").read_text() == "{}"
    assert not any(p.name.startswith("previous-") for p in out.iterdir())
    assert set(json.loads((out / "metrics.json").read_text())["models"]) == {"base", "final"}
