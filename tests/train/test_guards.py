"""Stability guards: a NaN/inf loss or gradient stops training with the step named, or is skipped on request."""

from __future__ import annotations

from pathlib import Path

import datasets
import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback, set_seed

import musicgen_lora.train.run as training
import musicgen_lora.train.trainer as trainer_module
from musicgen_lora.config.parsing import parse_config
from musicgen_lora.models.loading import load_model_and_processor
from musicgen_lora.train.callbacks import NonFiniteError
from musicgen_lora.train.lora import add_trainable_parts

from ..conftest import base_argv


def make_trainer(model_dir: Path, tmp_path: Path, *extra: str):
    argv = base_argv(model_dir, tmp_path, tmp_path / "out", tmp_path / "cache") + [
        "--per_device_train_batch_size",
        "2",
        "--max_steps",
        "5",
        "--logging_steps",
        "1",
        "--learning_rate",
        "1e-2",
        *extra,
    ]
    parsed = parse_config(argv)
    set_seed(0)
    model, processor = load_model_and_processor(parsed.model)
    model = add_trainable_parts(model, parsed.lora)
    generator = torch.Generator().manual_seed(0)
    dataset = datasets.Dataset.from_dict(
        {"codes": [torch.randint(0, 64, (4, 20), generator=generator).tolist() for _ in range(10)], "text": ["x"] * 10}
    )
    return training.build_trainer(parsed, model, processor, dataset, None), model


@pytest.fixture
def nan_loss_at_step_3(monkeypatch):
    original = trainer_module.codebook_cross_entropy
    calls = []

    def poisoned(logits, labels):
        sums, counts = original(logits, labels)
        calls.append(1)
        return (sums * float("nan"), counts) if len(calls) == 3 else (sums, counts)

    monkeypatch.setattr(trainer_module, "codebook_cross_entropy", poisoned)


def lora_weights(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def test_nan_loss_stops_with_the_step_and_keeps_earlier_checkpoints(tiny_model_dir, tmp_path, nan_loss_at_step_3):
    trainer, _ = make_trainer(tiny_model_dir, tmp_path, "--save_strategy", "steps", "--save_steps", "2")
    with pytest.raises(NonFiniteError, match="loss became NaN or infinite at step 3.*skip_nonfinite_batches"):
        trainer.train()
    saved = load_file(tmp_path / "out" / "checkpoint-2" / "adapter_model.safetensors")
    assert saved and all(torch.isfinite(t).all() for t in saved.values())


def test_nan_loss_batch_is_skipped_when_asked(tiny_model_dir, tmp_path, nan_loss_at_step_3):
    trainer, model = make_trainer(tiny_model_dir, tmp_path, "--skip_nonfinite_batches", "true")
    trainer.train()
    assert trainer.state.global_step == 5 and trainer.skipped_batches == 1
    assert all(torch.isfinite(w).all() for w in lora_weights(model).values())
    losses = [r["loss"] for r in trainer.state.log_history if "loss" in r]
    assert len(losses) == 5 and all(l == l for l in losses[:2] + losses[3:])  # noqa: E741 - finite elsewhere


def poison_gradient_at_step(model, step: int) -> None:
    """Make one LoRA weight's gradient NaN in the backward pass of ``step`` (one micro-batch per step)."""
    param = next(p for n, p in model.named_parameters() if p.requires_grad and "lm_heads.0.lora_B" in n)
    calls = []

    def hook(grad):
        calls.append(1)
        return grad * float("nan") if len(calls) == step else grad

    param.register_hook(hook)


def test_nan_gradient_stops_training(tiny_model_dir, tmp_path):
    trainer, model = make_trainer(tiny_model_dir, tmp_path)
    poison_gradient_at_step(model, 2)
    with pytest.raises(NonFiniteError, match="gradient became NaN or infinite at step 2"):
        trainer.train()
    assert all(torch.isfinite(w).all() for w in lora_weights(model).values())  # never reached the weights


def test_nan_gradient_step_is_skipped_when_asked(tiny_model_dir, tmp_path):
    trainer, model = make_trainer(tiny_model_dir, tmp_path, "--skip_nonfinite_batches", "true", "--max_steps", "2")
    poison_gradient_at_step(model, 2)
    snapshots = []

    class Snapshot(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            snapshots.append(lora_weights(model))

    trainer.add_callback(Snapshot())
    trainer.train()
    assert trainer.gradient_guard.skipped_steps == [2]
    for name, value in snapshots[0].items():  # step 2 changed nothing
        assert torch.equal(value, snapshots[1][name]), name
    assert all(torch.isfinite(w).all() for w in snapshots[1].values())


def test_gradient_norm_is_logged_and_clipped_by_default(tiny_model_dir, tmp_path):
    trainer, _ = make_trainer(tiny_model_dir, tmp_path, "--max_steps", "2")
    assert trainer.args.max_grad_norm == 1.0
    trainer.train()
    assert all("grad_norm" in r for r in trainer.state.log_history if "loss" in r)
