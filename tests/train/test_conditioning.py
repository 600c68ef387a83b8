"""Conditioning dropout: the rate, the null condition it trains, and that evaluation never drops captions."""

from __future__ import annotations

import datasets
import pytest
import torch
from transformers import AutoModelForTextToWaveform, AutoProcessor
from transformers.modeling_outputs import BaseModelOutput

from musicgen_lora.config.parsing import parse_config
from musicgen_lora.models.loading import load_model_and_processor
from musicgen_lora.train.collator import MusicgenCollator
from musicgen_lora.train.lora import add_trainable_parts
from musicgen_lora.train.run import build_trainer
from musicgen_lora.train.trainer import codebook_cross_entropy

from ..conftest import base_argv


def rows(n: int, frames: int = 10) -> list[dict]:
    generator = torch.Generator().manual_seed(0)
    return [{"codes": torch.randint(0, 64, (4, frames), generator=generator).tolist(), "text": "lofi piano"}] * n


def test_dropout_rate(tiny_model_dir):
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    collator = MusicgenCollator(processor.tokenizer, 64, 64, max_frames=50, text_dropout_prob=0.3)
    torch.manual_seed(0)
    dropped = 0
    for _ in range(50):
        mask = collator(rows(40))["attention_mask"]
        dropped += int((mask.sum(dim=1) == 0).sum())
    assert dropped / 2000 == pytest.approx(0.3, abs=0.03)
    none = MusicgenCollator(processor.tokenizer, 64, 64, max_frames=50, text_dropout_prob=0.0)
    assert (none(rows(40))["attention_mask"].sum(dim=1) > 0).all()


def test_dropped_clips_see_exactly_the_null_condition_of_generate(tiny_model_dir):
    model = AutoModelForTextToWaveform.from_pretrained(tiny_model_dir).eval()
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    always = MusicgenCollator(processor.tokenizer, 64, 64, max_frames=50, text_dropout_prob=0.999999)
    never = MusicgenCollator(processor.tokenizer, 64, 64, max_frames=50, text_dropout_prob=0.0)
    clip = rows(1)[0]
    captions = ["lofi hip hop, mellow piano", "techno, 140 bpm, acid bass line and loud kicks"]
    with torch.no_grad():

        def logits(collator, text):
            batch = collator([{**clip, "text": text}])
            batch.pop("labels")
            return model(**batch).logits, batch

        dropped_a, batch_a = logits(always, captions[0])
        dropped_b, _ = logits(always, captions[1])
        kept_a, _ = logits(never, captions[0])
        kept_b, _ = logits(never, captions[1])
        # generate()'s unconditional branch: zero encoder states and an all-zero attention mask
        hidden = model.text_encoder(input_ids=batch_a["input_ids"]).last_hidden_state
        null = model(
            encoder_outputs=BaseModelOutput(last_hidden_state=torch.zeros_like(hidden)),
            attention_mask=torch.zeros_like(batch_a["attention_mask"]),
            decoder_input_ids=batch_a["decoder_input_ids"],
            decoder_attention_mask=batch_a["decoder_attention_mask"],
        ).logits
    torch.testing.assert_close(dropped_a, dropped_b)  # the caption no longer matters
    torch.testing.assert_close(dropped_a, null)  # and it is the null input generate() uses for guidance
    assert not torch.allclose(kept_a, kept_b, atol=1e-5)  # kept captions do matter


def test_evaluation_batches_keep_every_caption(tiny_model_dir, tmp_path):
    argv = base_argv(tiny_model_dir, tmp_path, tmp_path / "out", tmp_path / "cache") + ["--text_dropout_prob", "0.9"]
    parsed = parse_config(argv)
    model, processor = load_model_and_processor(parsed.model)
    dataset = datasets.Dataset.from_list(rows(16, frames=30))
    trainer = build_trainer(parsed, model, processor, dataset, dataset)
    torch.manual_seed(0)
    train_masks = torch.cat([b["attention_mask"] for b in trainer.get_train_dataloader()])
    eval_masks = torch.cat([b["attention_mask"] for b in trainer.get_eval_dataloader()])
    assert (train_masks.sum(dim=1) == 0).sum() >= 8  # ~90 % dropped while training
    assert (eval_masks.sum(dim=1) > 0).all()  # none while evaluating
    assert trainer.data_collator.text_dropout_prob == 0.9  # the training collator is left as it was


def test_the_trained_adapter_follows_the_caption(tiny_model_dir, tmp_path):
    """Two styles with distinct captions: style A audio is predicted better under caption A than under caption B.

    The styles are defined on the codes (A: even codes, B: odd codes) because the tiny random codec maps real
    genres to near-identical code statistics; clips are short so the caption, not the audio so far, carries the style.
    """
    generator = torch.Generator().manual_seed(0)

    def clips(n: int, parity: int) -> list:
        return [(torch.randint(0, 32, (4, 10), generator=generator) * 2 + parity).tolist() for _ in range(n)]

    captions = {0: "calm ambient piano", 1: "loud techno drums"}
    train = datasets.Dataset.from_dict(
        {"codes": clips(32, 0) + clips(32, 1), "text": [captions[0]] * 32 + [captions[1]] * 32}
    )
    argv = base_argv(tiny_model_dir, tmp_path, tmp_path / "out", tmp_path / "cache") + [
        "--max_steps",
        "80",
        "--per_device_train_batch_size",
        "16",
        "--learning_rate",
        "1e-2",
        "--logging_steps",
        "100",
    ]
    parsed = parse_config(argv)
    torch.manual_seed(0)
    model, processor = load_model_and_processor(parsed.model)
    model = add_trainable_parts(model, parsed.lora)
    trainer = build_trainer(parsed, model, processor, train, None)
    trainer.train()
    collator = trainer.data_collator.for_evaluation()
    model.eval()

    def cross_entropy(parity: int, caption: str) -> float:
        sums = counts = 0.0
        with torch.no_grad():
            for codes in clips(8, parity):  # held-out clips
                batch = collator([{"codes": codes, "text": caption}])
                labels = batch.pop("labels")
                s, c = codebook_cross_entropy(model(**batch).logits, labels)
                sums, counts = sums + float(s.sum()), counts + float(c.sum())
        return sums / counts

    for parity in (0, 1):
        matched, swapped = cross_entropy(parity, captions[parity]), cross_entropy(parity, captions[1 - parity])
        assert matched < swapped - 0.3, (parity, matched, swapped)  # an untrained model shows no gap
