"""Resuming a run that has nothing left to train (the new user's afternoon of 2026-12-07: W1, W2, UC4, UC9, UC10,
UC11): a finished run is reported and left byte-identical, whatever form ``resume_from_checkpoint`` takes; a run that
stopped during its final save trains its last stretch again from the checkpoint before, never past ``max_steps``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file

from finetune_musicgen import main

from ..bad_input.world import tree_hashes
from ..conftest import base_argv

STEPS = 2


@pytest.fixture(scope="module")
def finished(tiny_model_dir, corpus_dir, data_cache_dir, tmp_path_factory) -> dict:
    """A finished run of 2 steps with a checkpoint after each (checkpoint-2 is at max_steps)."""
    out = tmp_path_factory.mktemp("rerun") / "run"
    argv = base_argv(tiny_model_dir, corpus_dir, out, data_cache_dir) + [
        "--max_steps", str(STEPS), "--save_strategy", "steps", "--save_steps", "1", "--max_train_samples", "2",
        "--per_device_train_batch_size", "2", "--lora_target_modules", "q_proj", "v_proj", "--logging_steps", "1",
        "--max_duration_in_seconds", "1",
    ]  # fmt: skip
    main(argv)
    return {"out": out, "argv": argv}


def copy_of(finished: dict, tmp_path: Path) -> tuple[Path, list[str]]:
    """A copy of the finished run, and its command aimed at the copy."""
    out = Path(shutil.copytree(finished["out"], tmp_path / "run"))
    argv = list(finished["argv"])
    argv[argv.index("--output_dir") + 1] = str(out)
    return out, argv


@pytest.mark.parametrize(
    "words",
    [
        ["--resume_from_checkpoint", "{out}"],  # W1: the run's folder itself
        ["--resume_from_checkpoint", "true"],  # W2: what the Studio's Resume sends
        ["--resume_from_checkpoint", "true", "--overwrite_output_dir", "true"],  # UC9: overwrite ignored, with a word
        ["--resume_from_checkpoint", "{out}/checkpoint-1"],  # UC11: an earlier checkpoint, the same config
        ["--lora_target_modules", "v_proj", "q_proj"],  # UC10: the same targets in another order
    ],
    ids=["run folder", "true", "true and overwrite", "earlier checkpoint", "targets reordered"],
)
def test_a_finished_run_asked_to_resume_is_reported_and_left_as_it_was(finished, tmp_path, caplog, words):
    out, argv = copy_of(finished, tmp_path)
    before = tree_hashes(out)
    result = main(argv + [word.format(out=out) for word in words])
    assert result["already_finished"] and result["model"] is None
    assert tree_hashes(out) == before  # no checkpoint-3, the same adapter, card and results
    assert "already finished with this config" in caplog.text
    if "--overwrite_output_dir" in words:
        assert "overwrite_output_dir is ignored" in caplog.text


@pytest.mark.slow
def test_a_run_stopped_in_its_final_save_trains_its_last_step_again_never_past_max_steps(finished, tmp_path, caplog):
    """UC4 too: the run's folder as resume_from_checkpoint continues a stopped run from its newest checkpoint."""
    out, argv = copy_of(finished, tmp_path)
    for name in ("adapter_model.safetensors", "train_results.json", "README.md", "all_results.json"):
        (out / name).unlink()
    result = main(argv + ["--resume_from_checkpoint", str(out)])
    assert "is at max_steps but the run did not finish: resuming from" in caplog.text
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == STEPS
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]
    assert [r["step"] for r in result["log_history"] if "loss" in r] == [1, STEPS]  # the last step once, no more
    reference = load_file(finished["out"] / "adapter_model.safetensors")
    got = load_file(out / "adapter_model.safetensors")
    assert max(float((got[key] - reference[key]).abs().max()) for key in reference) <= 1e-6
