"""Speed and memory options: frozen base in half precision, length bucketing, attention kernel."""

from __future__ import annotations

import shutil

import datasets
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
from musicgen_lora.train.run import build_trainer

from ..conftest import base_argv


def _dtypes(model: torch.nn.Module, part: str) -> set[torch.dtype]:
    """Dtypes of the base weights of one part (text_encoder, decoder, audio_encoder) of a (PEFT-wrapped) MusicGen."""
    base = model.get_base_model() if isinstance(model, PeftModel) else model
    return {p.dtype for n, p in base.named_parameters() if n.startswith(f"{part}.") and "lora_" not in n}


def test_bf16_keeps_the_frozen_base_in_bf16_and_adapters_in_fp32_and_everything_still_works(
    tiny_model_dir, corpus_dir, data_cache_dir, tmp_path
):
    out = tmp_path / "run"
    options = [
        "--bf16",
        "true",
        "--max_train_samples",
        "4",
        "--per_device_train_batch_size",
        "2",
        "--max_steps",
        "4",
        "--max_duration_in_seconds",
        "1",
        "--logging_steps",
        "1",
        "--save_strategy",
        "steps",
        "--save_steps",
        "2",
        "--train_sampling_strategy",
        "group_by_length",
    ]
    samples = ["--sample_prompts", "lofi hip hop, piano", "--sample_duration_in_seconds", "0.5"]
    result = main(base_argv(tiny_model_dir, corpus_dir, out, data_cache_dir) + options + samples)
    model = result["model"]
    assert {p.dtype for p in model.parameters() if p.requires_grad} == {torch.float32}  # LoRA weights
    assert _dtypes(model, "decoder") == {torch.bfloat16} and _dtypes(model, "text_encoder") == {torch.bfloat16}
    assert _dtypes(model, "audio_encoder") == {torch.float32}  # codes and sample decoding unchanged
    losses = [r["loss"] for r in result["log_history"] if "loss" in r]
    assert len(losses) == 4 and all(torch.isfinite(torch.tensor(losses)))
    adapter = load_file(out / "adapter_model.safetensors")
    assert adapter and all("lora_" in k and v.dtype == torch.float32 for k, v in adapter.items())
    assert (out / "samples" / "final" / "0.wav").is_file()  # generation through the cast model

    # the adapter loads over a fresh fp32 base as usual
    base = AutoModelForTextToWaveform.from_pretrained(tiny_model_dir)
    reloaded = PeftModel.from_pretrained(base, out)
    trained = dict(model.named_parameters())
    for name, param in reloaded.named_parameters():
        if "lora_" in name:
            torch.testing.assert_close(param, trained[name], rtol=0, atol=0)

    # exact resume with the cast base and length-grouped batches: continue from checkpoint-2, same adapter and losses
    reference = load_file(out / "adapter_model.safetensors")
    resumed_dir = tmp_path / "resumed"
    shutil.copytree(out / "checkpoint-2", resumed_dir / "checkpoint-2")
    resumed_argv = base_argv(tiny_model_dir, corpus_dir, resumed_dir, data_cache_dir) + options
    resumed = main(resumed_argv + ["--resume_from_checkpoint", "true"])
    for key, value in load_file(resumed_dir / "adapter_model.safetensors").items():
        torch.testing.assert_close(value, reference[key], rtol=0, atol=0)
    resumed_losses = [r["loss"] for r in resumed["log_history"] if "loss" in r]
    assert resumed_losses == losses


def test_base_model_dtype_float32_and_full_fine_tuning_keep_trained_weights_fp32(tiny_model_dir, tmp_path):
    from musicgen_lora.train.lora import cast_frozen_base, frozen_base_dtype

    common = base_argv(tiny_model_dir, tmp_path, tmp_path / "out", tmp_path / "cache") + ["--bf16", "true"]
    parsed = parse_config(common + ["--base_model_dtype", "float32"])
    assert frozen_base_dtype(parsed.model, parsed.training) == torch.float32
    parsed = parse_config(common + ["--use_lora", "false"])
    dtype = frozen_base_dtype(parsed.model, parsed.training)
    assert dtype == torch.bfloat16
    model, _ = load_model_and_processor(parsed.model)
    assert cast_frozen_base(model, dtype, parsed.lora) == ["text_encoder"]  # the trained decoder stays fp32
    model = add_trainable_parts(model, parsed.lora)
    assert {p.dtype for p in model.parameters() if p.requires_grad} == {torch.float32}
    assert _dtypes(model, "text_encoder") == {torch.bfloat16}


@pytest.mark.parametrize("option,value", [("base_model_dtype", "bf16"), ("attn_implementation", "fast")])
def test_unknown_speed_option_values_are_refused_with_the_choices(tiny_model_dir, tmp_path, option, value):
    with pytest.raises(UserError, match=f"{option} must be one of"):
        parse_config(base_argv(tiny_model_dir, tmp_path, tmp_path / "out", tmp_path / "cache") + [f"--{option}", value])


def _uneven(frames: list[int]) -> datasets.Dataset:
    generator = torch.Generator().manual_seed(0)
    codes = [torch.randint(0, 64, (4, n), generator=generator).tolist() for n in frames]
    return datasets.Dataset.from_dict({"codes": codes, "text": ["lofi piano"] * len(frames)})


def _padding_and_order(tiny_model_dir, tmp_path, strategy: str, dataset) -> tuple[float, list[list[int]]]:
    argv = base_argv(tiny_model_dir, tmp_path, tmp_path / "out", tmp_path / "cache") + [
        "--per_device_train_batch_size",
        "4",
        "--train_sampling_strategy",
        strategy,
        "--max_duration_in_seconds",
        "2",
    ]
    parsed = parse_config(argv)
    model, processor = load_model_and_processor(parsed.model)
    trainer = build_trainer(parsed, add_trainable_parts(model, parsed.lora), processor, dataset, None)
    loader = trainer.get_train_dataloader()
    padded = total = 0
    epochs = []
    for epoch in (0, 1):
        loader.set_epoch(epoch)
        steps = []
        for batch in loader:
            mask = batch["decoder_attention_mask"]  # (bsz, steps): 0 on padding
            padded, total = padded + int((mask == 0).sum()), total + mask.numel()
            steps.append(mask.sum(1).tolist())
        epochs.append(steps)
    return padded / total, epochs


def test_group_by_length_batches_clips_of_similar_length_in_a_reproducible_order(tiny_model_dir, tmp_path):
    frames = [int(x) for x in torch.randint(10, 100, (256,), generator=torch.Generator().manual_seed(1))]
    dataset = _uneven(frames)
    random_waste, _ = _padding_and_order(tiny_model_dir, tmp_path / "r", "random", dataset)
    grouped_waste, grouped = _padding_and_order(tiny_model_dir, tmp_path / "g", "group_by_length", dataset)
    assert grouped_waste < random_waste / 2
    assert sorted(n for batch in grouped[0] for n in batch) == sorted(f + 3 for f in frames)  # every clip, once
    _, again = _padding_and_order(tiny_model_dir, tmp_path / "g2", "group_by_length", dataset)
    assert again == grouped  # a resumed run sees the same batches in every epoch
    assert grouped[0] != grouped[1]  # and the order still changes from epoch to epoch


def test_eager_and_sdpa_attention_give_the_same_loss(tiny_model_dir, tmp_path):
    dataset = _uneven([40, 60, 25])
    losses = []
    for kernel in ("eager", "sdpa"):
        argv = base_argv(tiny_model_dir, tmp_path, tmp_path / kernel, tmp_path / "cache") + [
            "--attn_implementation",
            kernel,
            "--text_dropout_prob",
            "0",
            "--per_device_eval_batch_size",
            "3",
        ]
        parsed = parse_config(argv)
        model, processor = load_model_and_processor(parsed.model)
        assert model.config.decoder._attn_implementation == model.config.text_encoder._attn_implementation == kernel
        trainer = build_trainer(parsed, add_trainable_parts(model, parsed.lora), processor, dataset, dataset)
        losses.append(trainer.evaluate()["eval_loss"])
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)


def test_loading_in_bf16_equals_loading_in_fp32_then_casting_and_keeps_encodec_exact(tiny_model_dir, tmp_path):
    from musicgen_lora.train.lora import cast_frozen_base

    parsed = parse_config(base_argv(tiny_model_dir, tmp_path, tmp_path / "out", tmp_path / "cache"))
    reference, _ = load_model_and_processor(parsed.model)
    fp32_codec = {k: v.clone() for k, v in reference.audio_encoder.state_dict().items()}
    cast_frozen_base(reference, torch.bfloat16, parsed.lora)
    direct, _ = load_model_and_processor(parsed.model, dtype=torch.bfloat16)
    expected, loaded = reference.state_dict(), direct.state_dict()
    assert expected.keys() == loaded.keys()
    for key, value in expected.items():
        assert loaded[key].dtype == value.dtype and torch.equal(loaded[key], value), key
    for key, value in direct.audio_encoder.state_dict().items():  # bit for bit the stored fp32 codec: same codes
        assert value.dtype == fp32_codec[key].dtype and torch.equal(value, fp32_codec[key]), key
    assert {p.dtype for p in direct.decoder.parameters()} == {torch.bfloat16}
