"""The card of a run whose base is a relative local folder, asked for fp16 on a CPU and held out tracks with
eval_split_percentage: it names no Hub id (also when written or pushed later from another folder), says the
precision training ran in, and says where the held-out loss comes from."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from musicgen_lora.hub.card import build_model_card
from musicgen_lora.hub.upload import push_folder

from ..conftest import base_argv
from .fake_hub import USER, served_hub

TOKEN = "hf_testCardToken456"


@pytest.fixture(scope="module")
def relative_base_run(tiny_model_dir, corpus_dir, data_cache_dir, tmp_path_factory) -> Path:
    """Two steps on ``models/tiny-musicgen`` (a path relative to the folder training runs in), fp16 asked for on a
    CPU, 30 % of the tracks held out; returns the absolute output folder."""
    from finetune_musicgen import main

    root = tmp_path_factory.mktemp("relative-base")
    shutil.copytree(tiny_model_dir, root / "models" / "tiny-musicgen")
    argv = base_argv(Path("models/tiny-musicgen"), corpus_dir, Path("runs/lora"), data_cache_dir) + [
        "--fp16",
        "true",
        "--eval_split_percentage",
        "30",
        "--max_steps",
        "2",
        "--per_device_train_batch_size",
        "2",
        "--max_duration_in_seconds",
        "1",
    ]
    previous = Path.cwd()
    os.chdir(root)
    try:
        main(argv)
    finally:
        os.chdir(previous)
    return root / "runs" / "lora"


def card_text(output_dir: Path) -> str:
    return (output_dir / "README.md").read_text(encoding="utf-8")


def test_the_card_says_fp32_where_fp16_fell_back_on_the_cpu(relative_base_run):
    assert json.loads((relative_base_run / "finetune_config.json").read_text())["fp16"] is True  # as requested
    text = card_text(relative_base_run)
    assert "| precision | fp32 |" in text and "| precision | fp16 |" not in text


def test_the_card_names_the_held_out_share_of_eval_split_percentage(relative_base_run):
    text = card_text(relative_base_run)
    assert "After training, on 30 % of the tracks, held out (eval_split_percentage)" in text
    assert "`None`" not in text and "the None split" not in text


def test_a_relative_local_base_is_never_taken_for_a_hub_id(relative_base_run, tmp_path, monkeypatch):
    recorded = json.loads((relative_base_run / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert Path(recorded).is_absolute() and Path(recorded).is_dir()  # not 'models/tiny-musicgen'
    monkeypatch.chdir(tmp_path)  # a card written later, from another folder, where 'models/tiny-musicgen' is nothing
    card = build_model_card(relative_base_run)
    assert card.data.base_model is None and "models/tiny-musicgen" not in str(card)
    assert ModelCard.load(relative_base_run / "README.md").data.base_model is None  # the one training wrote

    # pushed later from that other folder: no base path in the card or adapter_config.json
    with served_hub(monkeypatch, TOKEN) as server:
        push_folder(relative_base_run, f"{USER}/relative-base", token=TOKEN)
        files = server.repos[f"{USER}/relative-base"].files
    assert json.loads(files["adapter_config.json"])["base_model_name_or_path"] is None
    pushed_card = ModelCard(files["README.md"].decode())
    assert pushed_card.data.base_model is None
    for name, data in files.items():
        if name.endswith((".json", ".md")):
            assert recorded not in data.decode() and "models/tiny-musicgen" not in data.decode(), name
