"""Sharded training: DeepSpeed ZeRO-2 in 2 CPU processes (LoRA, and full fine-tuning of the decoder) trains like one
process, saves the same files, resumes from its checkpoint and loads as usual; FSDP is refused with the reason."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import torch
from peft import PeftModel, get_peft_model_state_dict
from safetensors.torch import load_file
from transformers import AutoModelForTextToWaveform

from finetune_musicgen import main
from musicgen_lora.config.parsing import parse_config
from musicgen_lora.errors import UserError

from ..conftest import ROOT, base_argv, run_in_two_processes

needs_deepspeed = pytest.mark.skipif(
    importlib.util.find_spec("deepspeed") is None,
    reason="deepspeed is not installed (pip install deepspeed: ZeRO-2 then runs on the CPU)",
)

# A standard ZeRO-2 file: "auto" takes the Trainer's values.
ZERO2 = {
    "zero_optimization": {"stage": 2},
    "train_micro_batch_size_per_gpu": "auto",
    "train_batch_size": "auto",
    "gradient_accumulation_steps": "auto",
    "gradient_clipping": "auto",
}

# No randomness that depends on how the global batch of 4 is split between processes.
COMMON = [
    "--max_steps",
    "3",
    "--logging_steps",
    "1",
    "--learning_rate",
    "1e-2",
    "--text_dropout_prob",
    "0",
    "--lora_dropout",
    "0",
    "--decoder_dropout",
    "0",
    "--save_strategy",
    "steps",
    "--save_steps",
    "2",
]


def losses(output_dir: Path) -> list[float]:
    state = json.loads((output_dir / "trainer_state.json").read_text())
    return [r["loss"] for r in state["log_history"] if "loss" in r]


def zero2_run(argv: list[str], tmp_path: Path, out: Path, *extra: str) -> None:
    """Train in 2 processes with DeepSpeed ZeRO-2 and batch 2 each (the global batch of 4)."""
    config = tmp_path / "ds_zero2.json"
    config.write_text(json.dumps(ZERO2))
    command = [str(ROOT / "finetune_musicgen.py"), *argv, "--output_dir", str(out), "--deepspeed", str(config)]
    result = run_in_two_processes([*command, "--per_device_train_batch_size", "2", *extra])
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert result.returncode == 0, "\n".join(errors[:5]) + "\n" + result.stderr[-2000:]
    assert (out / "checkpoint-2" / "global_step2").is_dir()  # a DeepSpeed checkpoint: ZeRO did run


def one_then_zero2_then_resumed(argv: list[str], tmp_path: Path, weights: str) -> tuple[dict, dict, dict]:
    """The weights saved by one process (batch 4), by 2 ZeRO-2 processes, and by ZeRO-2 resumed from checkpoint-2
    (the losses of each run compared on the way)."""
    single = main(argv + ["--output_dir", str(tmp_path / "one"), "--per_device_train_batch_size", "4"])
    zero2_run(argv, tmp_path, tmp_path / "zero2")
    assert losses(tmp_path / "zero2") == pytest.approx([r["loss"] for r in single["log_history"] if "loss" in r], 1e-4)
    resumed = tmp_path / "resumed"
    shutil.copytree(tmp_path / "zero2" / "checkpoint-2", resumed / "checkpoint-2")
    zero2_run(argv, tmp_path, resumed, "--resume_from_checkpoint", "true")
    assert losses(resumed)[-1] == pytest.approx(losses(tmp_path / "zero2")[-1], rel=1e-6)
    return tuple(load_file(tmp_path / name / weights) for name in ("one", "zero2", "resumed"))


def assert_same(expected: dict, found: dict, atol: float, rtol: float = 1e-4) -> None:
    """Same keys, same shapes, values within the tolerance."""
    assert expected.keys() == found.keys()
    for key, value in expected.items():
        assert found[key].shape == value.shape, key
        torch.testing.assert_close(found[key], value, rtol=rtol, atol=atol)


@pytest.mark.multiprocess
@pytest.mark.slow
@needs_deepspeed
def test_lora_under_deepspeed_zero2_saves_the_one_process_adapter_resumes_and_loads(
    tiny_model_dir, corpus_dir, data_cache_dir, tmp_path
):
    argv = base_argv(tiny_model_dir, corpus_dir, tmp_path / "unused", data_cache_dir) + COMMON
    one, zero2, resumed = one_then_zero2_then_resumed(argv, tmp_path, "adapter_model.safetensors")
    assert zero2 and all("lora_" in key for key in zero2)
    assert_same(one, zero2, atol=1e-5)
    assert_same(zero2, resumed, atol=1e-6)
    loaded = PeftModel.from_pretrained(AutoModelForTextToWaveform.from_pretrained(tiny_model_dir), tmp_path / "zero2")
    assert_same(zero2, get_peft_model_state_dict(loaded), atol=0, rtol=0)  # the adapter as PeftModel holds it


@pytest.mark.multiprocess
@pytest.mark.slow
@needs_deepspeed
def test_full_decoder_fine_tuning_under_deepspeed_zero2_saves_the_one_process_model_resumes_and_loads(
    tiny_model_dir, corpus_dir, data_cache_dir, tmp_path
):
    argv = base_argv(tiny_model_dir, corpus_dir, tmp_path / "unused", data_cache_dir) + COMMON + ["--use_lora", "false"]
    one, zero2, resumed = one_then_zero2_then_resumed(argv, tmp_path, "model.safetensors")
    # DeepSpeed's gathered state dict also holds T5's tied copy of its input embeddings (one tensor, two names)
    tied = "text_encoder.encoder.embed_tokens.weight"
    assert set(zero2) - set(one) == {tied} and torch.equal(zero2.pop(tied), zero2["text_encoder.shared.weight"])
    resumed.pop(tied)
    assert_same(one, zero2, atol=1e-5)
    assert_same(zero2, resumed, atol=1e-6)
    loaded = AutoModelForTextToWaveform.from_pretrained(tmp_path / "zero2").state_dict()
    assert_same(zero2, {key: loaded[key] for key in zero2}, atol=0, rtol=0)


@pytest.mark.parametrize("how", ["config", "launcher"])
def test_fsdp_is_refused_with_the_reason_and_what_to_use_instead(tiny_model_dir, tmp_path, monkeypatch, how):
    argv = base_argv(tiny_model_dir, tmp_path, tmp_path / "out", tmp_path / "cache")
    if how == "config":
        argv += ["--fsdp", "full_shard auto_wrap"]
    else:  # accelerate launch --use_fsdp (or an accelerate config with FSDP) says it through the environment
        monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    with pytest.raises(UserError, match="fsdp is not supported for MusicGen .* DDP .* deepspeed"):
        parse_config(argv)
