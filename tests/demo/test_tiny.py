"""Tests for musicgen_lora.demo.tiny: the tiny mono MusicGen folder (facebook/musicgen-small's structure) loads with
the Auto classes, follows the real checkpoints' conventions, trains and generates, and is saved atomically by
save_tiny_musicgen and the command line. The stereo and melody variants: test_tiny_variants.py."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
from transformers import AutoModelForTextToWaveform

from musicgen_lora.demo import tiny

NUM_CODEBOOKS = 4
CODEBOOK_SIZE = 64
HOP = 640  # samples per codec frame: 32000 Hz / 50 Hz


def _snapshot(folder):
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(folder.iterdir())}


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_folder_contents_and_size(tiny_model_dir):
    names = {p.name for p in tiny_model_dir.iterdir()}
    for required in (
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "processor_config.json",
    ):
        assert required in names
    total = sum(p.stat().st_size for p in tiny_model_dir.iterdir())
    assert total < 5 * 2**20, total
    # nothing left over from the atomic write next to the folder
    assert [p.name for p in tiny_model_dir.parent.iterdir()] == [tiny_model_dir.name]


def test_loads_with_auto_classes(tiny_model):
    model, processor = tiny_model
    assert type(model).__name__ == "MusicgenForConditionalGeneration"
    assert type(processor).__name__ == "MusicgenProcessor"
    # transformers 5: T5Tokenizer is the tokenizers-backed class, T5TokenizerFast an alias of it
    assert type(processor.tokenizer).__name__ == "T5Tokenizer"
    assert type(processor.feature_extractor).__name__ == "EncodecFeatureExtractor"
    assert processor.feature_extractor.sampling_rate == 32000
    assert processor.feature_extractor.feature_size == 1


def test_config_matches_real_musicgen_conventions(tiny_model):
    model, _ = tiny_model
    cfg = model.config
    assert cfg.sampling_rate == 32000
    assert cfg.audio_encoder.frame_rate == 50
    assert cfg.audio_encoder.hop_length == HOP
    assert cfg.audio_encoder.num_quantizers == NUM_CODEBOOKS
    assert cfg.audio_encoder.codebook_size == CODEBOOK_SIZE
    assert cfg.audio_encoder.chunk_length_s is None  # generate()/forward() need exactly one codec frame
    assert cfg.decoder.num_codebooks == NUM_CODEBOOKS
    assert cfg.decoder.audio_channels == 1
    assert cfg.decoder.vocab_size == CODEBOOK_SIZE
    assert cfg.decoder.max_position_embeddings == 2048
    # special ids = codebook_size, like 2048 for the real 2048-code checkpoints
    assert cfg.decoder.pad_token_id == cfg.decoder.bos_token_id == CODEBOOK_SIZE
    assert cfg.decoder.decoder_start_token_id == CODEBOOK_SIZE
    assert cfg.decoder_start_token_id == cfg.pad_token_id == CODEBOOK_SIZE
    gen = model.generation_config
    assert gen.decoder_start_token_id == gen.pad_token_id == gen.bos_token_id == CODEBOOK_SIZE
    assert gen.do_sample is True
    assert gen.guidance_scale == 3.0
    assert gen.max_length == 1500


def test_same_seed_gives_identical_weights(tiny_model):
    model, _ = tiny_model
    rebuilt, _ = tiny.build_tiny_musicgen(seed=0)
    a, b = _state(model), _state(rebuilt)
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert different == []


def test_forward_with_labels_gives_finite_loss(tiny_model):
    model, processor = tiny_model
    inputs = processor(text=["lofi piano", "epic orchestral trailer with drums"], padding=True, return_tensors="pt")
    steps = 25
    labels = torch.randint(0, CODEBOOK_SIZE, (2, steps, NUM_CODEBOOKS), generator=torch.Generator().manual_seed(0))
    labels[1, -5:] = -100  # ignored positions
    # labels are used as given (no delay pattern is applied); decoder inputs = labels shifted right with
    # config.decoder.decoder_start_token_id, hence that attribute must be set
    with torch.no_grad():
        out = model(**inputs, labels=labels)
    assert torch.isfinite(out.loss)
    assert 0 < out.loss.item() < 2 * math.log(CODEBOOK_SIZE)
    assert out.logits.shape == (2 * NUM_CODEBOOKS, steps, CODEBOOK_SIZE)  # (bsz * codebooks, steps, vocab)


def test_generate_returns_audio(tiny_model):
    model, processor = tiny_model
    inputs = processor(text=["lofi piano", "happy jazz with saxophone"], padding=True, return_tensors="pt")
    torch.manual_seed(0)
    n = 64
    with torch.no_grad():
        audio = model.generate(**inputs, do_sample=True, guidance_scale=3, max_new_tokens=n)
    # generate() returns decoded audio (bsz, channels, samples), not codes. Sequences are
    # 1 (start token) + n long and the delay pattern shifts codebook k by k steps, so after the padded
    # positions are filtered out each codebook keeps n - (num_codebooks - 1) frames: (64 - 3) * 640 samples.
    assert audio.shape == (2, 1, (n - NUM_CODEBOOKS + 1) * HOP)
    assert torch.isfinite(audio).all()
    # quirk: the delay pattern is only built when 1 + n >= 2 * num_codebooks - 1 (n >= 6 here); for shorter
    # runs nothing is delayed and all n frames are decoded
    with torch.no_grad():
        short = model.generate(**inputs, do_sample=True, guidance_scale=3, max_new_tokens=5)
    assert short.shape == (2, 1, 5 * HOP)
    # processor.batch_decode strips nothing without a padding mask and gives one (channels, samples) array each
    decoded = processor.batch_decode(audio)
    assert len(decoded) == 2 and decoded[0].shape == (1, audio.shape[-1])


def test_second_save_is_idempotent_and_force_rebuilds(tiny_model_dir, tmp_path, capsys, tiny_model):
    model_dir = tmp_path / "copy"
    shutil.copytree(tiny_model_dir, model_dir)
    before = _snapshot(model_dir)

    assert tiny.save_tiny_musicgen(model_dir) == model_dir
    assert tiny.main([str(model_dir), "--seed", "3"]) == model_dir
    assert "exists" in capsys.readouterr().out
    assert _snapshot(model_dir) == before  # untouched: same bytes and mtimes

    assert tiny.main([str(model_dir), "--force", "--seed", "1"]) == model_dir
    assert json.loads((model_dir / "tiny_musicgen.json").read_text())["seed"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy"]  # no temp / old folders left
    other = _state(AutoModelForTextToWaveform.from_pretrained(model_dir))
    seed0 = _state(tiny_model[0])
    assert other.keys() == seed0.keys()
    assert not torch.equal(other["decoder.lm_heads.0.weight"], seed0["decoder.lm_heads.0.weight"])
    codebook = "audio_encoder.quantizer.layers.0.codebook.embed"
    assert not torch.equal(other[codebook], seed0[codebook])


def test_non_model_folder_is_not_clobbered(tmp_path):
    target = tmp_path / "busy"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        tiny.save_tiny_musicgen(target)
    assert (target / "notes.txt").read_text() == "keep me"


class _FailingProcessor:
    def save_pretrained(self, path):
        raise KeyboardInterrupt  # simulate an interrupted build half-way through writing


class _PartialModel:
    def save_pretrained(self, path):
        (path / "config.json").write_text("{}")


def test_interrupted_build_leaves_no_half_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(
        tiny, "build_tiny_musicgen", lambda seed=0, variant="mono": (_PartialModel(), _FailingProcessor())
    )
    with pytest.raises(KeyboardInterrupt):
        tiny.save_tiny_musicgen(tmp_path / "fresh")
    assert list(tmp_path.iterdir()) == []

    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "config.json").write_text('{"old": true}')
    with pytest.raises(KeyboardInterrupt):
        tiny.save_tiny_musicgen(existing, force=True)
    assert (existing / "config.json").read_text() == '{"old": true}'  # previous folder restored
    assert [p.name for p in tmp_path.iterdir()] == ["existing"]


def test_cli_help(capsys):
    with pytest.raises(SystemExit) as exc:
        tiny.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "OUT_DIR" in out and "--seed" in out and "--force" in out
    assert "--variant" in out and "{mono,stereo,melody}" in out


def test_unknown_variant_and_variant_mismatch_are_refused(tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match="variant"):
        tiny.save_tiny_musicgen(tmp_path / "x", variant="surround")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(SystemExit):
        tiny.main([str(tmp_path / "x"), "--variant", "surround"])
    # a folder built here for another variant is not silently handed back as the requested one
    model_dir = tmp_path / "mono"
    shutil.copytree(tiny_model_dir, model_dir)
    with pytest.raises(FileExistsError, match="'mono', not 'stereo'"):
        tiny.save_tiny_musicgen(model_dir, variant="stereo")


def test_cli_forwards_the_variant(stereo_model_dir, capsys):
    """--variant reaches save_tiny_musicgen: the stereo folder is recognised as built (a mono request would raise)."""
    assert tiny.main([str(stereo_model_dir), "--variant", "stereo"]) == stereo_model_dir
    assert "already exists" in capsys.readouterr().out
    with pytest.raises(SystemExit) as refused:  # the command's one-line error
        tiny.main([str(stereo_model_dir)])
    assert refused.value.code == 2 and "'stereo', not 'mono'" in capsys.readouterr().err
