"""Tests for musicgen_lora.demo.tiny_tokenizer: the tiny caption tokenizer behaves like T5's and is rebuilt the
same in every process."""

from __future__ import annotations

from transformers import AutoProcessor

from musicgen_lora.demo.tiny_tokenizer import build_tiny_tokenizer


def test_tokenizer_is_t5_like(tiny_model_dir):
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    tok = processor.tokenizer
    assert (tok.pad_token, tok.eos_token, tok.unk_token) == ("<pad>", "</s>", "<unk>")
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)
    assert 500 <= len(tok) <= 1000
    for text in ["lofi piano", "Upbeat 80s synth-pop in C# major at 128 bpm", "Zxqv café 🎵 naïve!!", ""]:
        ids = tok(text).input_ids
        assert ids[-1] == tok.eos_token_id
        assert max(ids) < len(tok)
    # unknown characters map to <unk> (no byte fallback), never raise
    assert tok.unk_token_id in tok("🎵").input_ids
    assert tok.decode(tok("lofi piano").input_ids, skip_special_tokens=True) == "lofi piano"
    batch = processor(text=["lofi piano", "epic orchestral trailer with huge drums"], padding=True, return_tensors="pt")
    assert batch["input_ids"].shape == batch["attention_mask"].shape
    assert batch["input_ids"][0, -1] == tok.pad_token_id


def test_saved_tokenizer_is_the_one_built_in_process(tiny_model_dir):
    """The folder's tokenizer (trained in the fixture's build) and a fresh build give the same ids and vocabulary."""
    saved = AutoProcessor.from_pretrained(tiny_model_dir).tokenizer
    fresh = build_tiny_tokenizer()
    assert fresh.get_vocab() == saved.get_vocab()
    text = "Dreamy lofi hip hop, 72 bpm, Eb major, dusty drums"
    assert fresh(text).input_ids == saved(text).input_ids
