"""LoRA options: target names, rsLoRA, DoRA, an adaptable text encoder, and their errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForTextToWaveform

from finetune_musicgen import main
from musicgen_lora.config.parsing import parse_config
from musicgen_lora.errors import UserError
from musicgen_lora.models.loading import load_model_and_processor
from musicgen_lora.train.lora import add_trainable_parts

from ..conftest import base_argv


def quick_run(model_dir, corpus_dir, cache_dir, out: Path, *extra: str) -> dict:
    return main(
        base_argv(model_dir, corpus_dir, out, cache_dir)
        + [
            "--max_steps",
            "3",
            "--max_train_samples",
            "2",
            "--per_device_train_batch_size",
            "2",
            "--learning_rate",
            "1e-2",
            *extra,
        ]
    )


def test_single_codebook_targets(tiny_model_dir, tmp_path):
    parsed = parse_config(
        base_argv(tiny_model_dir, tmp_path, tmp_path / "o", tmp_path / "c")
        + [
            "--lora_target_modules",
            "lm_heads.1",
            "embed_tokens.3",
        ]
    )
    model, _ = load_model_and_processor(parsed.model)
    names = {
        n.split(".lora_")[0] for n, p in add_trainable_parts(model, parsed.lora).named_parameters() if p.requires_grad
    }
    assert names == {"base_model.model.decoder.lm_heads.1", "base_model.model.decoder.model.decoder.embed_tokens.3"}


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--lora_target_modules", "qkv"], "unknown LoRA target 'qkv'.*valid names: q_proj"),
        (["--lora_target_regex", "(unclosed"], "not a valid regular expression"),
    ],
)
def test_bad_target_names_are_refused_with_the_config(tmp_path, extra, expected):
    """Before a model is loaded or a file touched: the names and the regex are checked when the config is read."""
    with pytest.raises(UserError, match=expected):
        parse_config(base_argv(tmp_path / "no-model", tmp_path, tmp_path / "o", tmp_path / "c") + extra)


def test_targets_that_match_nothing_are_refused_once_the_model_is_known(tiny_model_dir, tmp_path):
    parsed = parse_config(
        base_argv(tiny_model_dir, tmp_path, tmp_path / "o", tmp_path / "c")
        + [
            "--lora_target_regex",
            "nothing_matches_this",
        ]
    )
    model, _ = load_model_and_processor(parsed.model)
    with pytest.raises(UserError, match="match no module"):
        add_trainable_parts(model, parsed.lora)


def test_rslora_scales_by_the_square_root_of_the_rank(tiny_model_dir, tmp_path):
    parsed = parse_config(
        base_argv(tiny_model_dir, tmp_path, tmp_path / "o", tmp_path / "c")
        + [
            "--use_rslora",
            "true",
            "--lora_r",
            "4",
            "--lora_alpha",
            "8",
        ]
    )
    model, _ = load_model_and_processor(parsed.model)
    model = add_trainable_parts(model, parsed.lora)
    layer = model.base_model.model.decoder.lm_heads[0]
    assert layer.scaling["default"] == pytest.approx(8 / 4**0.5)


def test_dora_trains_and_reloads(tiny_model_dir, corpus_dir, data_cache_dir, tmp_path):
    result = quick_run(
        tiny_model_dir,
        corpus_dir,
        data_cache_dir,
        tmp_path / "dora",
        "--use_dora",
        "true",
        "--lora_target_modules",
        "q_proj",
        "v_proj",
        "fc1",
        "lm_heads",
    )
    out = Path(result["output_dir"])
    assert json.loads((out / "adapter_config.json").read_text())["use_dora"] is True
    assert any("lora_magnitude_vector" in k for k in load_file(out / "adapter_model.safetensors"))
    reloaded = PeftModel.from_pretrained(AutoModelForTextToWaveform.from_pretrained(tiny_model_dir), out).eval()
    batch = {"input_ids": torch.tensor([[5, 6, 1]]), "decoder_input_ids": torch.randint(0, 64, (4, 8))}
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**batch).logits, result["model"].eval()(**batch).logits)


def test_text_encoder_lora(tiny_model_dir, corpus_dir, data_cache_dir, tmp_path):
    result = quick_run(tiny_model_dir, corpus_dir, data_cache_dir, tmp_path / "te", "--train_text_encoder", "true")
    weights = load_file(Path(result["output_dir"]) / "adapter_model.safetensors")
    text_keys = [k for k in weights if ".text_encoder." in k]
    assert text_keys and all("SelfAttention" in k for k in text_keys)
    assert any(k.endswith("lora_B.weight") and weights[k].abs().max() > 0 for k in text_keys)  # it trained
    base = result["model"].get_base_model()
    base.train()
    assert base.text_encoder.training  # a trained text encoder is not held in eval mode
    assert not base.audio_encoder.training


def test_full_fine_tuning_with_the_text_encoder(tiny_model_dir, corpus_dir, data_cache_dir, tmp_path):
    quick_run(
        tiny_model_dir,
        corpus_dir,
        data_cache_dir,
        tmp_path / "full",
        "--use_lora",
        "false",
        "--train_text_encoder",
        "true",
    )
    tuned = AutoModelForTextToWaveform.from_pretrained(tmp_path / "full").state_dict()
    base = AutoModelForTextToWaveform.from_pretrained(tiny_model_dir).state_dict()
    changed = {k for k in base if not torch.equal(base[k], tuned[k])}
    assert any(k.startswith("text_encoder.") for k in changed)
    assert not any(k.startswith("audio_encoder.") for k in changed)
