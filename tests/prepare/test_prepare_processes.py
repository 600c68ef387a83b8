"""Preparation with several processes (torchrun, gloo on the CPU): each process encodes its share of the shards, the
main one assembles the same data as one process; interrupted, it continues; an error in one process stops all with
its line."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import datasets
import pytest
import torch

from musicgen_lora.prepare import encoding
from musicgen_lora.prepare.cli import main as prepare_main
from musicgen_lora.prepare.encoding import share_rows
from musicgen_lora.prepare.reuse import FINGERPRINT_NAME, PREPARED_DIR_NAME

from ..conftest import base_argv, process_lines, run_in_two_processes
from .prepare_in_processes import USER_ERROR

HELPER = Path(__file__).with_name("prepare_in_processes.py")
SHARD = 2  # 8 clips: 4 shards, two per process
# what each process measures for the main one besides the codes: loudness for the captions, levels per frame
OPTIONS = ["--add_metadata", "true", "--caption_template", "{caption}; {lufs}", "--silence_threshold_db", "-70"]


def prepared_train(output_dir: Path) -> datasets.Dataset:
    return datasets.load_from_disk(str(output_dir / PREPARED_DIR_NAME / "train"))


def in_two_processes(argv: list[str], tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess, list[int]]:
    """Run the helper in 2 processes; its result and the clips each process encoded."""
    counts = tmp_path / "counts"
    counts.mkdir(exist_ok=True)
    for old in counts.glob("*.json"):
        old.unlink()
    result = run_in_two_processes([str(HELPER), str(counts), *argv], CLIPS_PER_SHARD=str(SHARD), **env)
    return result, [json.loads((counts / f"encoded-{rank}.json").read_text()) for rank in range(2)]


@pytest.fixture(scope="module")
def one_process(tiny_model_dir, corpus_dir, tmp_path_factory) -> datasets.Dataset:
    """The reference: the data prepared by one process with one thread, as each torchrun process has."""
    folder = tmp_path_factory.mktemp("one-process")
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(encoding, "CLIPS_PER_SHARD", SHARD)
        torch.set_num_threads(1)
        try:
            prepare_main(base_argv(tiny_model_dir, corpus_dir, folder / "out", folder / "cache") + OPTIONS)
        finally:
            torch.set_num_threads(threads)
    return prepared_train(folder / "out")


def test_shares_are_whole_interleaved_shards():
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(encoding, "CLIPS_PER_SHARD", 3)
        shares = [share_rows(10, index, 2) for index in range(2)]  # shards [0-2] [3-5] [6-8] [9]
    assert shares == [[0, 1, 2, 6, 7, 8], [3, 4, 5, 9]]
    assert share_rows(2, 1, 2) == []  # more processes than shards: nothing to do


@pytest.mark.multiprocess
@pytest.mark.slow
def test_two_processes_each_encode_half_and_prepare_the_same_data_as_one(
    one_process, tiny_model_dir, corpus_dir, tmp_path
):
    argv = base_argv(tiny_model_dir, corpus_dir, tmp_path / "out", tmp_path / "cache") + OPTIONS
    result, encoded = in_two_processes(argv, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert encoded == [4, 4]  # shards 0 and 2, 1 and 3; the main process then only assembles
    two = prepared_train(tmp_path / "out")
    assert two["codes"] == one_process["codes"] and two["text"] == one_process["text"]
    assert all(text.endswith(" LUFS") for text in two["text"])  # the measured loudness is in the captions


@pytest.mark.multiprocess
@pytest.mark.slow
def test_an_interrupted_two_process_preparation_continues_with_what_it_finished(
    one_process, tiny_model_dir, corpus_dir, tmp_path
):
    argv = base_argv(tiny_model_dir, corpus_dir, tmp_path / "out", tmp_path / "cache") + OPTIONS
    # process 1 dies at its third clip (the first of its second shard); process 0 finishes its shards
    result, encoded = in_two_processes(argv, tmp_path, FAIL_RANK="1", FAIL_AT="3", FAIL_WITH="crash")
    assert result.returncode != 0 and encoded == [4, 3]
    assert "RuntimeError: power cut" in "\n".join(process_lines(result, 1))  # its own traceback
    assert any(
        "error: process 1 failed while encoding its share of the data: RuntimeError: power cut" in line
        for line in process_lines(result, 0)
    )
    assert len(list((tmp_path / "cache").glob("codes-*"))) == 3  # three finished shards kept, none half-written
    assert not (tmp_path / "out" / PREPARED_DIR_NAME / FINGERPRINT_NAME).exists()

    result, encoded = in_two_processes(argv, tmp_path)  # the same command again
    assert result.returncode == 0, result.stderr[-3000:]
    assert encoded == [0, 2]  # only the unfinished shard
    assert prepared_train(tmp_path / "out")["codes"] == one_process["codes"]


@pytest.mark.multiprocess
@pytest.mark.slow
def test_a_one_line_error_in_one_process_is_the_error_of_every_process(tiny_model_dir, corpus_dir, tmp_path):
    argv = base_argv(tiny_model_dir, corpus_dir, tmp_path / "out", tmp_path / "cache")
    result, _ = in_two_processes(argv, tmp_path, FAIL_RANK="1", FAIL_AT="1", FAIL_WITH="user")
    assert result.returncode != 0
    for rank in range(2):
        lines = process_lines(result, rank)
        assert f"error: {USER_ERROR}" in lines, "\n".join(lines[-20:])
        assert not any(re.search("Traceback|Connection closed", line) for line in lines)
