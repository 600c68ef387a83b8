"""Configs of the popular MusicGen LoRA script (dreambooth_musicgen.py) train here unchanged."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import soundfile as sf

from musicgen_lora.config.parsing import parse_config
from musicgen_lora.errors import UserError

from ..hub.fake_hub import USER, served_hub

TOKEN = "hf_compatToken"

# That script's example config for a punk LoRA, key for key; only the model, the data and the output folder point at
# local copies here (the tiny model, a folder with a `clean` split whose metadata names files in an `others` column).
PUNK = {
    "overwrite_output_dir": True,
    "output_dir": "./punk_tmp",
    "dataset_name": "ylacombe/tiny-punk",
    "dataset_config_name": "default",
    "target_audio_column_name": "others",
    "instance_prompt": "punk",
    "train_split_name": "clean",
    "eval_split_name": "clean",
    "max_duration_in_seconds": 30,
    "min_duration_in_seconds": 1.0,
    "model_name_or_path": "facebook/musicgen-melody",
    "preprocessing_num_workers": 8,
    "do_train": True,
    "fp16": True,
    "num_train_epochs": 4,
    "gradient_accumulation_steps": 8,
    "gradient_checkpointing": True,
    "per_device_train_batch_size": 2,
    "learning_rate": 2e-4,
    "adam_beta1": 0.9,
    "adam_beta2": 0.99,
    "weight_decay": 0.1,
    "dataloader_num_workers": 8,
    "use_lora": True,
    "logging_steps": 1,
    "pad_token_id": 2048,
    "decoder_start_token_id": 2048,
    "do_eval": True,
    "predict_with_generate": True,
    "include_inputs_for_metrics": True,
    "eval_steps": 25,
    "evaluation_strategy": "steps",
    "per_device_eval_batch_size": 1,
    "max_eval_samples": 8,
    "generation_max_length": 400,
    "seed": 456,
    "push_to_hub": True,
    "hub_model_id": "musicgen-melody-lora-punk",
    "report_to": "wandb",
    "add_audio_samples_to_wandb": True,
    "add_metadata": True,
    "full_generation_sample_text": "80s punk track with groovy saxophone",
    "guidance_scale": 3.0,
}
RENAMED = {
    "target_audio_column_name": "audio_column_name",
    "evaluation_strategy": "eval_strategy",
    "full_generation_sample_text": "sample_prompts",
}
IGNORED = [
    "pad_token_id", "decoder_start_token_id", "predict_with_generate",
    "include_inputs_for_metrics", "generation_max_length", "add_audio_samples_to_wandb",
]  # fmt: skip


def write_config(folder: Path, values: dict) -> str:
    path = folder / "config.json"
    path.write_text(json.dumps(values, indent=4))
    return str(path)


def minimal(tmp_path: Path, **extra) -> dict:
    return {"model_name_or_path": "m", "dataset_name": "d", "output_dir": str(tmp_path / "o"), **extra}


@pytest.fixture()
def punk_folder(corpus_dir, tmp_path) -> Path:
    """4 clips of the corpus as `punk/clean/`, with only an `others` column of file names (captions:
    instance_prompt)."""
    clean = tmp_path / "punk" / "clean"
    clean.mkdir(parents=True)
    rows = [json.loads(line) for line in (corpus_dir / "metadata.jsonl").read_text().splitlines()][:4]
    with (clean / "metadata.jsonl").open("w") as handle:
        for row in rows:
            shutil.copy(corpus_dir / row["file_name"], clean / Path(row["file_name"]).name)
            handle.write(json.dumps({"others": Path(row["file_name"]).name}) + "\n")
    return tmp_path / "punk"


def test_the_popular_scripts_punk_config_trains_unchanged(tiny_model_dir, punk_folder, tmp_path, monkeypatch, caplog):
    wandb = pytest.importorskip("wandb", reason="wandb is not installed (pip install -r requirements-dev.txt)")

    from finetune_musicgen import main

    out = tmp_path / "punk_tmp"
    config = write_config(
        tmp_path,
        {**PUNK, "model_name_or_path": str(tiny_model_dir), "dataset_name": str(punk_folder), "output_dir": str(out)},
    )
    for name in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
        (tmp_path / name).mkdir()
        monkeypatch.setenv(name, str(tmp_path / name))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # the codes cache defaults to $HF_HOME/musicgen_lora
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    with served_hub(monkeypatch, TOKEN) as hub, caplog.at_level(logging.WARNING, logger="musicgen_lora"):
        try:
            result = main([config, "--sample_duration_in_seconds", "1"])  # the config's 8 s samples: slow on a CPU
        finally:
            wandb.finish()
            wandb.teardown()  # wandb keeps its settings (WANDB_DIR) per process; later tests need fresh ones
    # one notice per translated key, naming ours
    notices = [r.getMessage() for r in caplog.records if r.name == "musicgen_lora.config.foreign_configs"]
    for theirs, ours in RENAMED.items():
        assert (
            f"config key '{theirs}' (from the popular MusicGen LoRA script) is called '{ours}' here; using it as "
            f"'{ours}'" in notices
        )
    for key in IGNORED:
        assert any(
            n.startswith(f"config key '{key}' (from the popular MusicGen LoRA script) is ignored: ") for n in notices
        )
    assert len(notices) == len(RENAMED) + len(IGNORED) and all("\n" not in n for n in notices)
    # it trained, evaluated on the clean split, rendered its sample, logged to wandb and pushed
    assert result["train"]["epoch"] == pytest.approx(4) and result["eval"]["eval_loss"] > 0
    assert (out / "adapter_model.safetensors").is_file()
    assert (out / "samples" / "final" / "prompts.txt").read_text() == "0.wav\t80s punk track with groovy saxophone\n"
    assert sf.info(str(out / "samples" / "final" / "0.wav")).frames == 32000
    assert len(list((tmp_path / "WANDB_DIR" / "wandb").glob("offline-run-*"))) == 1
    assert "adapter_model.safetensors" in hub.repos[f"{USER}/musicgen-melody-lora-punk"].files
    # the saved config speaks our names, so it repeats the run here
    saved = json.loads((out / "finetune_config.json").read_text())
    assert saved["audio_column_name"] == "others" and saved["eval_strategy"] == "steps"
    assert saved["sample_prompts"] == ["80s punk track with groovy saxophone"] and saved["instance_prompt"] == "punk"
    assert not set(saved) & (set(RENAMED) | set(IGNORED))


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        ("model_revision", "v2", "revisions are not selected here"),
        ("token", "hf_secret", "tokens do not belong in config files"),
        ("config_name", "other/config", "the model config always comes from model_name_or_path"),
        ("processor_name", "other/processor", "the processor always comes from model_name_or_path"),
    ],
)
def test_keys_that_cannot_be_honoured_are_rejected_with_the_reason(tmp_path, key, value, reason):
    with pytest.raises(UserError, match=f"config key '{key}' in .* is not supported: {reason}.*; remove it"):
        parse_config([write_config(tmp_path, minimal(tmp_path, **{key: value}))])


def test_harmless_values_of_those_keys_pass(tmp_path):
    parsed = parse_config(
        [write_config(tmp_path, minimal(tmp_path, model_revision="main", token=None, config_name=None))]
    )
    assert "model_revision" not in parsed.requested and "token" not in parsed.requested


def test_renamed_values_are_converted_and_conflicts_refused(tmp_path):
    parsed = parse_config(
        [
            write_config(
                tmp_path,
                minimal(
                    tmp_path, freeze_text_encoder=False, sample_prompts=["jazz"], full_generation_sample_text="punk"
                ),
            )
        ]
    )
    assert parsed.lora.train_text_encoder is True
    assert parsed.training.sample_prompts == ["punk", "jazz"]
    with pytest.raises(
        UserError, match="sets both 'target_audio_column_name' .* and 'audio_column_name' with different values"
    ):
        parse_config([write_config(tmp_path, minimal(tmp_path, target_audio_column_name="a", audio_column_name="b"))])


def test_our_own_names_and_unknown_keys_are_untouched(tmp_path):
    parsed = parse_config(
        [
            write_config(
                tmp_path,
                minimal(tmp_path, guidance_scale=4.0, audio_column_name="song", push_metadata_repo_id="me/enriched"),
            )
        ]
    )
    assert (parsed.training.guidance_scale, parsed.data.audio_column_name) == (4.0, "song")
    assert parsed.data.push_metadata_repo_id == "me/enriched"  # their key, our option: the captioned data is pushed
    with pytest.raises(UserError, match="clap_model_name_or_path 'laion/clap-htsat-unfused' is not a local CLAP"):
        parse_config(
            [
                write_config(
                    tmp_path, minimal(tmp_path, clap_model_name_or_path="laion/clap-htsat-unfused", add_metadata=True)
                )
            ]
        )
    with pytest.raises(UserError, match="unknown option 'lora_rank' .*did you mean 'lora_r'"):
        parse_config([write_config(tmp_path, minimal(tmp_path, lora_rank=8))])
