"""The real script end to end on the tiny model, adapter reload, generation, and loss scaling."""

from __future__ import annotations

import json
import math
from pathlib import Path

import datasets
import pytest
import soundfile as sf
import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForTextToWaveform, AutoProcessor, set_seed

from musicgen_lora.config.arguments import RESOLVED_CONFIG_NAME
from musicgen_lora.config.parsing import parse_config
from musicgen_lora.generate.render import generate_audio
from musicgen_lora.models.loading import load_model_and_processor
from musicgen_lora.train.lora import add_trainable_parts
from musicgen_lora.train.run import build_trainer
from musicgen_lora.train.trainer import codebook_cross_entropy

from ..conftest import base_argv


def test_outputs_are_a_peft_adapter_with_only_lora_weights(trained_run):
    out = Path(trained_run["output_dir"])
    for name in (
        "adapter_config.json",
        "adapter_model.safetensors",
        "tokenizer.json",
        "processor_config.json",
        RESOLVED_CONFIG_NAME,
        "train_results.json",
        "all_results.json",
        "trainer_state.json",
    ):
        assert (out / name).is_file(), name
    weights = load_file(out / "adapter_model.safetensors")
    assert weights and all("lora_" in key for key in weights)
    assert any("lm_heads" in key for key in weights) and any("embed_tokens" in key for key in weights)
    assert any("self_attn.q_proj" in key for key in weights) and any("encoder_attn.v_proj" in key for key in weights)
    assert not any("text_encoder" in key or "audio_encoder" in key for key in weights)


def test_training_loss_falls_on_a_small_overfit_set(trained_run):
    losses = [record["loss"] for record in trained_run["log_history"] if "loss" in record]
    assert len(losses) >= 4
    assert losses[-1] < 0.85 * losses[0], losses


def test_resolved_config_reproduces_the_run(trained_run):
    parsed = parse_config([str(Path(trained_run["output_dir"]) / RESOLVED_CONFIG_NAME)])
    original = parse_config(trained_run["argv"])
    assert (parsed.model, parsed.data, parsed.lora) == (original.model, original.data, original.lora)
    assert parsed.training.max_steps == 40 and parsed.training.learning_rate == pytest.approx(3e-3)


def _text_and_codes(processor, num_codebooks: int = 4, frames: int = 20):
    inputs = processor(text=["lofi hip hop, piano", "techno"], padding=True, return_tensors="pt")
    generator = torch.Generator().manual_seed(0)
    decoder_input_ids = torch.randint(0, 64, (2 * num_codebooks, frames), generator=generator)
    return {**inputs, "decoder_input_ids": decoder_input_ids}


def test_peft_reload_over_a_fresh_base_gives_identical_logits(trained_run, tiny_model_dir):
    trained = trained_run["model"].eval()
    base = AutoModelForTextToWaveform.from_pretrained(tiny_model_dir)
    reloaded = PeftModel.from_pretrained(base, trained_run["output_dir"]).eval()
    processor = AutoProcessor.from_pretrained(trained_run["output_dir"])
    batch = _text_and_codes(processor)
    with torch.no_grad():
        expected = trained(**batch).logits
        got = reloaded(**batch).logits
        plain = AutoModelForTextToWaveform.from_pretrained(tiny_model_dir).eval()(**batch).logits
    assert torch.equal(got, expected)
    assert not torch.allclose(plain, expected, atol=1e-4)  # the adapter really changes the model


def test_generation_through_the_peft_model_has_the_requested_length(trained_run, tiny_model_dir):
    base = AutoModelForTextToWaveform.from_pretrained(tiny_model_dir)
    model = PeftModel.from_pretrained(base, trained_run["output_dir"])
    processor = AutoProcessor.from_pretrained(trained_run["output_dir"])
    audio = generate_audio(model, processor, ["lofi hip hop", "techno, 128 bpm"], seconds=1.2, seed=3)
    assert audio.shape == (2, 1, int(1.2 * 32000))
    assert torch.isfinite(torch.from_numpy(audio)).all() and abs(audio).max() > 0
    again = generate_audio(model, processor, ["lofi hip hop", "techno, 128 bpm"], seconds=1.2, seed=3)
    assert (again == audio).all()  # same seed, same weights: same audio
    # the samples written at the end of training have the requested length too
    for path in trained_run["samples"]:
        info = sf.info(path)
        assert info.samplerate == 32000 and info.frames == int(1.5 * 32000)


# --------------------------------------------------------------------------------------- loss scaling


@pytest.fixture(scope="module")
def uneven_dataset() -> datasets.Dataset:
    """Clips of very different lengths: a per-micro-batch mean would weight them wrongly."""
    generator = torch.Generator().manual_seed(1)
    lengths = [12, 40, 25, 7]
    return datasets.Dataset.from_dict(
        {
            "codes": [torch.randint(0, 64, (4, n), generator=generator).tolist() for n in lengths],
            "text": ["lofi hip hop", "techno, 128 bpm", "bossa nova, nylon guitar", "rock"],
        }
    )


def _one_sgd_step(model_dir, dataset, tmp_path, batch_size: int, accumulation: int, checkpointing: bool = False):
    argv = base_argv(model_dir, tmp_path, tmp_path / "out", tmp_path / "cache") + [
        "--per_device_train_batch_size",
        str(batch_size),
        "--gradient_accumulation_steps",
        str(accumulation),
        "--gradient_checkpointing",
        str(checkpointing).lower(),
        "--max_steps",
        "1",
        "--logging_steps",
        "1",
        "--optim",
        "sgd",  # update = lr * gradient, so equal updates mean equal gradients
        "--learning_rate",
        "0.5",
        "--max_grad_norm",
        "0",  # clipping would hide a mis-scaled gradient
        "--lr_scheduler_type",
        "constant",
        "--lora_dropout",
        "0",
        "--text_dropout_prob",
        "0",  # random conditioning dropout would differ between batch shapes
    ]
    parsed = parse_config(argv)
    set_seed(0)  # LoRA's A matrices are drawn from the global generator
    model, processor = load_model_and_processor(parsed.model)
    for module in model.decoder.modules():  # decoder dropout would draw different masks for different batch shapes
        if isinstance(getattr(module, "dropout", None), float):
            module.dropout = 0.0
    model = add_trainable_parts(model, parsed.lora)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    trainer = build_trainer(parsed, model, processor, dataset, None)
    trainer.train()
    loss = next(r["loss"] for r in trainer.state.log_history if "loss" in r)
    deltas = {n: p.detach() - before[n] for n, p in model.named_parameters() if p.requires_grad}
    return loss, deltas


def test_batch_and_accumulation_give_the_same_loss_and_gradients(tiny_model_dir, uneven_dataset, tmp_path):
    loss_a, deltas_a = _one_sgd_step(tiny_model_dir, uneven_dataset, tmp_path / "a", batch_size=4, accumulation=1)
    loss_b, deltas_b = _one_sgd_step(tiny_model_dir, uneven_dataset, tmp_path / "b", batch_size=1, accumulation=4)
    assert loss_a == pytest.approx(loss_b, rel=1e-4)
    assert any(d.abs().max() > 1e-4 for d in deltas_a.values())  # the step really moved the adapter
    for name in deltas_a:
        torch.testing.assert_close(deltas_a[name], deltas_b[name], rtol=1e-4, atol=1e-6)


def test_gradient_checkpointing_with_lora_gives_the_same_gradients(tiny_model_dir, uneven_dataset, tmp_path):
    loss_a, deltas_a = _one_sgd_step(tiny_model_dir, uneven_dataset, tmp_path / "a", 4, 1, checkpointing=False)
    loss_b, deltas_b = _one_sgd_step(tiny_model_dir, uneven_dataset, tmp_path / "b", 4, 1, checkpointing=True)
    assert loss_a == pytest.approx(loss_b, rel=1e-5)
    for name in deltas_a:
        torch.testing.assert_close(deltas_a[name], deltas_b[name], rtol=1e-4, atol=1e-6)


def test_frozen_text_encoder_and_codec_stay_in_eval_mode_during_training(tiny_model_dir, tmp_path):
    parsed = parse_config(base_argv(tiny_model_dir, tmp_path, tmp_path / "out", tmp_path / "cache"))
    model, _ = load_model_and_processor(parsed.model)
    model = add_trainable_parts(model, parsed.lora)
    model.train()  # what Trainer does before every step
    base = model.get_base_model()
    assert base.decoder.training
    assert not any(m.training for m in base.text_encoder.modules())
    assert not any(m.training for m in base.audio_encoder.modules())


def test_full_fine_tuning_trains_the_decoder_only(tiny_model_dir, corpus_dir, data_cache_dir, tmp_path):
    from finetune_musicgen import main

    out = tmp_path / "full"
    argv = base_argv(tiny_model_dir, corpus_dir, out, data_cache_dir) + [
        "--use_lora",
        "false",
        "--max_steps",
        "2",
        "--max_train_samples",
        "2",
        "--per_device_train_batch_size",
        "2",
        "--learning_rate",
        "1e-2",
    ]
    main(argv)
    assert not (out / "adapter_config.json").exists()
    tuned = AutoModelForTextToWaveform.from_pretrained(out)
    base = AutoModelForTextToWaveform.from_pretrained(tiny_model_dir)
    tuned_state, base_state = tuned.state_dict(), base.state_dict()
    changed = {k for k in base_state if not torch.equal(base_state[k], tuned_state[k])}
    assert any(k.startswith("decoder.") for k in changed)
    assert not any(k.startswith(("text_encoder.", "audio_encoder.")) for k in changed)
    assert json.loads((out / RESOLVED_CONFIG_NAME).read_text())["use_lora"] is False


def split_corpus(corpus_dir: Path, target: Path) -> Path:
    """The corpus as train/ (6 clips) and validation/ (2 clips) subfolders."""
    rows = [json.loads(line) for line in (corpus_dir / "metadata.jsonl").read_text().splitlines()]
    for split, part in (("train", rows[:6]), ("validation", rows[6:])):
        folder = target / split
        folder.mkdir(parents=True)
        for row in part:
            (folder / row["file_name"]).write_bytes((corpus_dir / row["file_name"]).read_bytes())
        (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
    return target


def test_evaluation_during_and_after_training(tiny_model_dir, corpus_dir, data_cache_dir, tmp_path):
    from finetune_musicgen import main

    dataset = split_corpus(corpus_dir, tmp_path / "split")
    out = tmp_path / "run"
    result = main(
        base_argv(tiny_model_dir, dataset, out, data_cache_dir)
        + [
            "--eval_split_name",
            "validation",
            "--eval_strategy",
            "steps",
            "--eval_steps",
            "2",
            "--max_steps",
            "4",
            "--per_device_train_batch_size",
            "3",
            "--per_device_eval_batch_size",
            "2",
        ]
    )
    evaluations = [r for r in result["log_history"] if "eval_loss" in r]
    assert [r["step"] for r in evaluations] == [2, 4, 4]  # every eval_steps, then the final evaluation
    assert 0 < result["eval"]["eval_loss"] < 10
    assert json.loads((out / "eval_results.json").read_text())["eval_loss"] == pytest.approx(
        result["eval"]["eval_loss"]
    )


def test_periodic_evaluation_without_eval_data_is_refused(tiny_model_dir, corpus_dir, data_cache_dir, tmp_path, capsys):
    from finetune_musicgen import main

    with pytest.raises(SystemExit):
        main(base_argv(tiny_model_dir, corpus_dir, tmp_path / "o", data_cache_dir) + ["--eval_strategy", "steps"])
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert message.startswith("error: ") and "eval_split_name" in message


def test_training_logs_per_codebook_cross_entropy(trained_run):
    records = [r for r in trained_run["log_history"] if "loss" in r]
    for record in records:
        per_codebook = [record[f"ce_q{k}"] for k in range(1, 5)]
        assert record["ce"] == pytest.approx(sum(per_codebook) / 4, rel=1e-6)  # every codebook has as many targets
        assert record["ppl"] == pytest.approx(math.exp(record["ce"]), rel=1e-6)
    assert records[-1]["ce"] < records[0]["ce"]


def test_eval_loss_is_the_true_mean_over_clips_of_different_lengths(tiny_model_dir, uneven_dataset, tmp_path):
    argv = base_argv(tiny_model_dir, tmp_path, tmp_path / "out", tmp_path / "cache") + [
        "--per_device_eval_batch_size",
        "1",
    ]
    parsed = parse_config(argv)
    model, processor = load_model_and_processor(parsed.model)
    trainer = build_trainer(parsed, model, processor, uneven_dataset, uneven_dataset)
    metrics = trainer.evaluate()
    # by hand: every target of every clip weighs the same
    collator = trainer.data_collator.for_evaluation()
    sums, counts = torch.zeros(4, dtype=torch.float64), torch.zeros(4, dtype=torch.float64)
    per_clip_means = []
    with torch.no_grad():
        for row in uneven_dataset:
            batch = collator([row])
            labels = batch.pop("labels")
            s, c = codebook_cross_entropy(model.eval()(**batch).logits, labels)
            sums, counts = sums + s.double(), counts + c.double()
            per_clip_means.append(float(s.sum() / c.sum()))
    assert metrics["eval_loss"] == pytest.approx(float(sums.sum() / counts.sum()), rel=1e-5)
    for k in range(4):
        assert metrics[f"eval_ce_q{k + 1}"] == pytest.approx(float(sums[k] / counts[k]), rel=1e-5)
    # the naive average of per-batch means is measurably different here, so the test can tell them apart
    assert abs(sum(per_clip_means) / 4 - metrics["eval_loss"]) > 1e-4
