"""The bad-input catalogue: every command, given what users get wrong, answers with exit status 2 (130 after
Ctrl-C), one line naming the problem and the fix, no traceback, and leaves every earlier file in its output and data
folders byte-identical (the framework: tests/bad_input/world.py; the cases, as data: tests/bad_input/*_cases.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import finetune_musicgen
from musicgen_lora.demo import synth, tiny
from musicgen_lora.evaluate import cli as evaluate_cli
from musicgen_lora.generate import cli as generate_cli
from musicgen_lora.hub import cli as push_cli
from musicgen_lora.prepare import cli as prepare_cli
from musicgen_lora.studio import __main__ as studio_cli
from musicgen_lora.train import plots

from .bad_input.data_cases import DATA_CASES
from .bad_input.tool_cases import TOOL_CASES
from .bad_input.train_cases import TRAIN_CASES
from .bad_input.world import Case, World, changed_files, check_failure, tree_hashes
from .conftest import base_argv

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
}
CASES: dict[str, Case] = {
    f"{case.command}: {name}": case for group in (TRAIN_CASES, DATA_CASES, *TOOL_CASES) for name, case in group.items()
}


@pytest.fixture(scope="module")
def other_base_checkpoint(tmp_path_factory, corpus_dir, data_cache_dir):
    """Made on first use: a complete checkpoint trained on a tiny MusicGen with another codebook size."""
    made: list[Path] = []

    def make() -> Path:
        if not made:
            from musicgen_lora.demo.tiny import build_tiny_musicgen

            root = tmp_path_factory.mktemp("other-base")
            model, processor = build_tiny_musicgen(seed=1, codebook_size=32)
            model.save_pretrained(root / "model")
            processor.save_pretrained(root / "model")
            finetune_musicgen.main(
                base_argv(root / "model", corpus_dir, root / "run", data_cache_dir)
                + ["--max_steps", "1", "--save_strategy", "steps", "--save_steps", "1", "--max_train_samples", "2",
                   "--per_device_train_batch_size", "2"]  # fmt: skip
            )
            made.append(root / "run" / "checkpoint-1")
        return made[0]

    return make


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name, tmp_path, monkeypatch, capsys, tiny_model_dir, corpus_dir, data_cache_dir, trained_run,
                   other_base_checkpoint):  # fmt: skip
    case = CASES[name]
    world = World(
        tmp=tmp_path / "case", model=tiny_model_dir, shared_corpus=corpus_dir, cache=data_cache_dir,
        trained_run=Path(trained_run["output_dir"]), other_checkpoint_factory=other_base_checkpoint,
        monkeypatch=monkeypatch,
    )  # fmt: skip
    world.tmp.mkdir()
    monkeypatch.chdir(world.tmp)
    with world.resources:
        check_case(case, world, capsys, {"case": world.tmp, "model": tiny_model_dir, "corpus": corpus_dir})


def check_case(case: Case, world: World, capsys: pytest.CaptureFixture, watched: dict[str, Path]) -> None:
    """Run one case in-process and check its promise (see tests/bad_input/world.py)."""
    argv = case.argv(world)
    before = {label: tree_hashes(folder) for label, folder in watched.items()}
    capsys.readouterr()
    try:
        MAINS[case.command](argv)
        code: object = 0
    except SystemExit as exit_:
        code = exit_.code
    captured = capsys.readouterr()
    print(check_failure(code, captured.out, captured.err, case.code, case.expect))  # shown by pytest -rP
    for label, folder in watched.items():
        changed = changed_files(before[label], tree_hashes(folder), case.may_change)
        assert not changed, f"earlier files in the {label} folder changed: {changed[:5]}"
