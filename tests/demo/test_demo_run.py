"""The README's quickstart: ``python finetune_musicgen.py`` with no arguments builds a tiny random MusicGen and a
synthetic corpus, trains LoRA adapters on them and writes an adapter, samples and a card. Its time, memory and loss
figures in the README are measurements, never asserted here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import soundfile as sf
import torch
from peft import PeftModel
from transformers import AutoModelForTextToWaveform

from musicgen_lora.demo.assets import DEMO_CLIPS, DEMO_CONFIG, DEMO_CORPUS, DEMO_MODEL

from ..conftest import RATE

pytestmark = pytest.mark.slow  # runs the whole offline demo (40 epochs)


def test_the_demo_writes_the_adapter_samples_and_card_the_readme_names(demo_run):
    root = demo_run["root"]
    out = root / DEMO_CONFIG["output_dir"]
    assert Path(root / demo_run["result"]["output_dir"]).resolve() == out.resolve()
    assert (root / DEMO_MODEL / "config.json").is_file()
    assert len((root / DEMO_CORPUS / "metadata.jsonl").read_text().splitlines()) == DEMO_CLIPS
    for name in ("adapter_config.json", "adapter_model.safetensors", "README.md", "finetune_config.json"):
        assert (out / name).is_file(), name
    prompts = DEMO_CONFIG["sample_prompts"]
    for folder in ("base", "final"):  # demo_output/lora/samples/final/*.wav, and the base model's for comparison
        wavs = sorted((out / "samples" / folder).glob("*.wav"))
        assert len(wavs) == len(prompts), folder
        for wav in wavs:
            info = sf.info(str(wav))
            assert info.samplerate == RATE and info.frames == round(DEMO_CONFIG["sample_duration_in_seconds"] * RATE)
    assert [Path(p).name for p in demo_run["result"]["samples"]] == [f"{i}.wav" for i in range(len(prompts))]


def test_the_demo_learns(demo_run):
    losses = [record["loss"] for record in demo_run["result"]["log_history"] if "loss" in record]
    steps = DEMO_CLIPS // DEMO_CONFIG["per_device_train_batch_size"] * DEMO_CONFIG["num_train_epochs"]
    assert len(losses) == steps // DEMO_CONFIG["logging_steps"]
    assert losses[-1] < 0.9 * losses[0]  # a clear fall, not noise (the README quotes the measured figures)


def test_the_demo_adapter_loads_like_any_peft_adapter(demo_run):
    root = demo_run["root"]
    base = AutoModelForTextToWaveform.from_pretrained(root / DEMO_MODEL)
    reloaded = PeftModel.from_pretrained(base, root / DEMO_CONFIG["output_dir"])
    trained = dict(demo_run["result"]["model"].named_parameters())
    lora = {name: param for name, param in reloaded.named_parameters() if "lora_" in name}
    assert lora and lora.keys() <= trained.keys()
    for name, param in lora.items():
        torch.testing.assert_close(param, trained[name], rtol=0, atol=0)
    # its card names no Hub id for the relative local base (demo_output/tiny-musicgen is a folder, not a Hub repo)
    card = (root / DEMO_CONFIG["output_dir"] / "README.md").read_text()
    assert "base_model:" not in card.split("---")[1] and "BASE_MODEL_ID" in card
    config = json.loads((root / DEMO_CONFIG["output_dir"] / "adapter_config.json").read_text())
    assert Path(config["base_model_name_or_path"]) == (root / DEMO_MODEL).resolve()
