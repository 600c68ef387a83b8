"""evaluate.py end to end on the tiny model with five models besides the base (a trained adapter, the same at half
strength, a copy of the base weights, a freshly initialised LoRA and one trained 2 steps at learning rate 1e-12), its
metrics' analytic checks, the comparison's verdicts, and the report in Chromium."""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import librosa
import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file, save_file

from musicgen_lora.audio import analysis
from musicgen_lora.evaluate import metrics
from musicgen_lora.evaluate.frechet import frechet_distance, frechet_distance_from_stats
from musicgen_lora.evaluate.metrics import audio_health
from musicgen_lora.evaluate.prompts import Prompt, read_prompts
from musicgen_lora.evaluate.spectrogram import write_spectrogram_png

from ..conftest import ROOT, base_argv, write_tone

PROMPTS = ["lofi hip hop, 84 bpm, A minor, piano", "techno, 128 bpm, F minor, saw synth"]
# same: a "fully fine-tuned" folder holding the base weights unchanged; fresh: a LoRA as initialised, before any step;
# tiny_lr: trained 2 steps at learning rate 1e-12. The last three equal the base model.
MODELS = ("base", "final", "half", "same", "fresh", "tiny_lr")
EQUAL_TO_BASE = ("same", "fresh", "tiny_lr")
NUM_SAMPLES = 4  # 8 clips per model: the fewest for which the comparison calls a change (bootstrap.MIN_UNITS)
DURATION = 1.5
GENERATION_BATCH = 3  # batches cross prompts: (0,0) (0,1) (0,2) | (0,3) (1,0) (1,1) | (1,2) (1,3)


# ------------------------------------------------------------------------------------------------ Fréchet


def _random_covariance(rng: np.random.Generator, dim: int) -> np.ndarray:
    a = rng.standard_normal((dim, dim))
    return a @ a.T / dim + 0.1 * np.eye(dim)


def test_frechet_distance_is_zero_for_identical_sets_and_symmetric():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, 8)) @ rng.standard_normal((8, 8))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-9)
    assert frechet_distance(x, x[::-1].copy()) == pytest.approx(0.0, abs=1e-9)  # order does not matter
    y = rng.standard_normal((400, 8)) + 0.5
    assert frechet_distance(x, y) == pytest.approx(frechet_distance(y, x), rel=1e-9)


def test_frechet_distance_matches_the_closed_form_for_gaussians():
    rng = np.random.default_rng(1)
    # 1-D: (m1 - m2)^2 + (s1 - s2)^2
    assert frechet_distance_from_stats([1.0], [[4.0]], [-2.0], [[9.0]]) == pytest.approx(9.0 + 1.0)
    # commuting (diagonal) covariances: |m1 - m2|^2 + sum (sqrt(a) - sqrt(b))^2
    a, b = rng.uniform(0.1, 3, 6), rng.uniform(0.1, 3, 6)
    mu1, mu2 = rng.standard_normal(6), rng.standard_normal(6)
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert frechet_distance_from_stats(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-10)
    # general covariances: the textbook form with a matrix square root of S1 S2
    scipy_linalg = pytest.importorskip("scipy.linalg")
    s1, s2 = _random_covariance(rng, 10), _random_covariance(rng, 10)
    m1, m2 = rng.standard_normal(10), rng.standard_normal(10)
    textbook = ((m1 - m2) ** 2).sum() + np.trace(s1 + s2 - 2 * scipy_linalg.sqrtm(s1 @ s2).real)
    assert frechet_distance_from_stats(m1, s1, m2, s2) == pytest.approx(textbook, rel=1e-8)
    # samples of two Gaussians: the sample estimate converges to the closed form
    x = rng.multivariate_normal(m1, s1, size=100_000)
    y = rng.multivariate_normal(m2, s2, size=100_000)
    closed = frechet_distance_from_stats(m1, s1, m2, s2)
    assert frechet_distance(x, y) == pytest.approx(closed, rel=0.02)


@pytest.mark.slow
def test_frechet_distance_grows_with_distortion(corpus_dir):
    clips = [sf.read(p, dtype="float32")[0] for p in sorted(corpus_dir.glob("clip_*.wav"))[:6]]
    reference = np.concatenate([analysis.frame_descriptors(c, 32000) for c in clips])
    rng = np.random.default_rng(0)
    distances = []
    for noise in (0.0, 0.01, 0.03, 0.1, 0.3):
        distorted = [np.clip(c + noise * rng.standard_normal(c.shape), -1, 1) for c in clips]
        distances.append(
            frechet_distance(np.concatenate([analysis.frame_descriptors(c, 32000) for c in distorted]), reference)
        )
    assert distances[0] == pytest.approx(0.0, abs=1e-6)
    assert all(later > earlier for earlier, later in zip(distances, distances[1:], strict=False)), distances


# ------------------------------------------------------------------------------------------------ helpers


def test_audio_health_counts_silence_clipping_and_nonfinite_samples():
    sr = 32000
    audio = np.concatenate([0.5 * np.sin(np.arange(sr) / 5.0), np.zeros(sr)])[None].copy()
    audio[0, :100] = 1.0
    audio[0, 500] = np.nan
    audio[0, 501] = np.inf
    health = audio_health(audio, sr, requested_seconds=2.5)
    assert health["duration"] == pytest.approx(2.0) and health["duration_ratio"] == pytest.approx(0.8)
    assert health["silent_fraction"] == pytest.approx(0.5)
    assert health["clipping_fraction"] == pytest.approx(100 / (2 * sr))
    assert health["nan_samples"] == 1 and health["inf_samples"] == 1
    assert -20 < health["loudness_lufs"] < 0
    assert audio_health(np.zeros((1, sr)), sr, 1.0)["loudness_lufs"] is None  # silent: no loudness, not -inf


def test_prompts_are_parsed_for_tempo_and_key(tmp_path):
    prompt = Prompt.parse("Techno, 128 BPM, f# min, saw synth")
    assert (prompt.bpm, prompt.key) == (128.0, "F# minor")
    assert Prompt.parse("ambient pads").bpm is None
    path = tmp_path / "prompts.json"
    path.write_text(json.dumps(["jazz, 90 bpm", {"text": "rock", "bpm": 140, "key": "E minor"}]))
    prompts = read_prompts(path)
    assert [(p.text, p.bpm, p.key) for p in prompts] == [("jazz, 90 bpm", 90.0, None), ("rock", 140, "E minor")]
    (tmp_path / "p.txt").write_text("one\n\ntwo, C major\n")
    assert [p.key for p in read_prompts(tmp_path / "p.txt")] == [None, "C major"]
    # a JSON list in a file without .json (W8 of the new user's afternoon) is read as JSON, not as one prompt
    for name in ("prompts", "prompts.yaml", "prompts.txt"):
        (tmp_path / name).write_text('["lofi piano", {"text": "rock", "bpm": 120}]')
        assert [(p.text, p.bpm) for p in read_prompts(tmp_path / name)] == [("lofi piano", None), ("rock", 120)]
    (tmp_path / "lines").write_text("[intro] lofi piano\n{verse} rock\n")  # not JSON: one prompt per line
    assert [p.text for p in read_prompts(tmp_path / "lines")] == ["[intro] lofi piano", "{verse} rock"]


def test_a_prompt_unsure_of_the_octave_asks_for_either_tempo(monkeypatch):
    prompt = Prompt.parse("lofi piano, 85 or 170 bpm, A minor")  # a caption's wording where the octave is in doubt
    assert (prompt.bpm, prompt.bpm_alternative, prompt.key) == (85.0, 170.0, "A minor")
    assert Prompt.parse("jazz, 90 bpm").bpm_alternative is None
    for played in (86.0, 169.0):  # either is right; the nearer one is the target
        monkeypatch.setattr(metrics, "estimate_tempo", lambda audio, sr, bpm=played: SimpleNamespace(bpm=bpm))
        monkeypatch.setattr(metrics, "estimate_key", lambda audio, sr: None)
        result = metrics.adherence(np.zeros(32000), 32000, prompt)
        assert result["target_bpm"] == (85.0 if played < 100 else 170.0) and result["tempo_within_4pct"]


def test_spectrogram_png_shows_a_tone_as_one_bright_band(tmp_path):
    sr, hz = 32000, 440.0
    drawn = write_spectrogram_png(tmp_path / "s.png", np.sin(np.arange(2 * sr) * 2 * np.pi * hz / sr), sr)
    pil = pytest.importorskip("PIL.Image")
    with pil.open(tmp_path / "s.png") as png:
        pixels = np.asarray(png.convert("RGB"), dtype=float)
    assert pixels.shape[:2] == drawn.shape and drawn.shape[0] == 128 and drawn.max() == 0.0
    brightness = pixels.sum(axis=2).mean(axis=1)[::-1]  # per mel band, lowest first (the PNG has them at the bottom)
    mel_hz = librosa.mel_frequencies(n_mels=128, fmin=30.0, fmax=sr / 2, htk=True)
    assert abs(mel_hz[int(np.argmax(brightness))] - hz) < 0.1 * hz  # the brightest row is the tone's
    assert np.median(brightness) < 0.25 * brightness.max()  # and the rest is dark


# ------------------------------------------------------------------------------------------------ the script


@pytest.fixture(scope="module")
def half_adapter(trained_run, tmp_path_factory) -> Path:
    """A second adapter: the trained one with its LoRA update halved (lora_B scaled by 0.5)."""
    folder = tmp_path_factory.mktemp("adapters") / "half"
    source = Path(trained_run["output_dir"])
    folder.mkdir()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        shutil.copy(source / name, folder / name)
    weights = load_file(folder / "adapter_model.safetensors")
    save_file({k: v * 0.5 if "lora_B" in k else v for k, v in weights.items()}, folder / "adapter_model.safetensors")
    return folder


@pytest.fixture(scope="module")
def fresh_adapter(tiny_model_dir, tmp_path_factory) -> Path:
    """A LoRA adapter as training initialises it, before its first step (PEFT's init: lora_B zero)."""
    from musicgen_lora.config.arguments import LoraArguments, ModelArguments
    from musicgen_lora.models.loading import load_model_and_processor
    from musicgen_lora.train.lora import add_trainable_parts

    model, _ = load_model_and_processor(ModelArguments(model_name_or_path=str(tiny_model_dir)))
    folder = tmp_path_factory.mktemp("adapters") / "fresh"
    peft_model = add_trainable_parts(model, LoraArguments())
    peft_model.save_pretrained(folder)
    assert all(not v.any() for k, v in load_file(folder / "adapter_model.safetensors").items() if "lora_B" in k)
    return folder


@pytest.fixture(scope="module")
def tiny_lr_run(tiny_model_dir, corpus_dir, data_cache_dir, tmp_path_factory) -> Path:
    """The real script, 2 steps at learning rate 1e-12 on the 4 clips (their codes are cached by trained_run)."""
    from finetune_musicgen import main as train

    output_dir = tmp_path_factory.mktemp("runs") / "tiny-lr"
    train(base_argv(tiny_model_dir, corpus_dir, output_dir, data_cache_dir) + [
        "--max_train_samples", "4", "--per_device_train_batch_size", "2", "--max_steps", "2", "--learning_rate",
        "1e-12", "--lora_dropout", "0",
    ])  # fmt: skip
    return output_dir


@pytest.fixture(scope="module")
def evaluation(trained_run, half_adapter, fresh_adapter, tiny_lr_run, tiny_model_dir, corpus_dir, data_cache_dir,
               tmp_path_factory) -> dict:  # fmt: skip
    from evaluate import main
    from musicgen_lora.evaluate import run

    out = tmp_path_factory.mktemp("evaluation") / "eval"
    same = shutil.copytree(tiny_model_dir, out.parent / "same")
    prompts = out.parent / "prompts.json"
    prompts.write_text(json.dumps(PROMPTS))
    argv = [
        "--base_model", str(tiny_model_dir), "--model", f"final={trained_run['output_dir']}", "--model",
        f"half={half_adapter}", "--model", f"same={same}", "--model", f"fresh={fresh_adapter}", "--model",
        f"tiny_lr={tiny_lr_run}", "--prompts", str(prompts), "--duration", str(DURATION), "--num_samples",
        str(NUM_SAMPLES), "--seed", "0", "--generation_batch_size", str(GENERATION_BATCH),
        # the 4 clips the adapter was trained on: their codes are cached by the training run (fast)
        "--eval_dataset", str(corpus_dir), "--max_eval_samples", "4", "--train_dataset", str(corpus_dir),
        "--max_train_samples", "4", "--data_cache_dir", str(data_cache_dir), "--output_dir", str(out),
        "--bootstrap_resamples", "500",
    ]  # fmt: skip
    bars = []
    real_progress = run.progress

    def recorded(**kwargs):
        bars.append(kwargs)
        return real_progress(**kwargs)

    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(printed):
        patch.setattr(run, "progress", recorded)
        result = main(argv)
    result["out"], result["bars"], result["stdout"] = out, bars, printed.getvalue()
    return result


def _numbers(value, path=""):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _numbers(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _numbers(v, f"{path}[{i}]")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield path, value


def _nulls(value, path=""):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _nulls(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _nulls(v, f"{path}[{i}]")
    elif value is None:
        yield path


@pytest.mark.slow
def test_every_output_exists_and_parses(evaluation):
    out = evaluation["out"]
    for model in MODELS:
        for index in range(len(PROMPTS)):
            for sample in range(NUM_SAMPLES):
                audio, sr = sf.read(out / model / f"{index}-{sample}.wav", dtype="float32", always_2d=True)
                assert sr == 32000 and audio.shape == (int(DURATION * sr), 1)
                assert (out / model / f"{index}-{sample}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = [json.loads(line) for line in (out / "comparison_results.jsonl").read_text().splitlines()]
    assert len(lines) == len(MODELS) * len(PROMPTS) * NUM_SAMPLES
    assert {(r["model"], r["prompt_index"], r["sample"]) for r in lines} == {
        (m, i, s) for m in MODELS for i in range(len(PROMPTS)) for s in range(NUM_SAMPLES)
    }
    for record in lines:
        assert (out / record["path"]).is_file() and (out / record["spectrogram"]).is_file()
        assert record["prompt"] == PROMPTS[record["prompt_index"]]
        position = record["prompt_index"] * NUM_SAMPLES + record["sample"]  # batches mix prompts and samples
        assert (record["batch"], record["batch_row"]) == divmod(position, GENERATION_BATCH)
        assert record["seed"] == record["batch"]  # --seed 0: batch b uses seed b, for every model
        assert record["duration"] == pytest.approx(DURATION) and record["duration_ratio"] == pytest.approx(1.0)
        assert record["target_bpm"] == [84.0, 128.0][record["prompt_index"]]
        assert record["nan_samples"] == 0 and record["inf_samples"] == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics["models"]) == list(MODELS)
    numbers = list(_numbers(metrics))
    assert len(numbers) > 100 and all(math.isfinite(v) for _, v in numbers)
    # non-finite values would have become null: only these may be null (no tempo found in the tiny model's noise)
    nulls = [
        p
        for p in _nulls(metrics)
        if not p.startswith(".settings")
        and not p.endswith((".path", "tempo_rel_error_mean"))
        and not (p.startswith(".comparison") and p.endswith((".direction", ".better")))  # unchanged; no better way
    ]
    assert nulls == [], nulls
    assert not (out / ".evaluate.lock").exists()  # the folder's lock is gone with the evaluation
    # one progress bar over models x prompts
    (bar,) = [b for b in evaluation["bars"] if b.get("desc") == "Rendering"]
    assert bar["total"] == len(MODELS) * len(PROMPTS) and bar["unit"] == "prompt"
    html = (out / "report.html").read_text()
    assert "http://" not in html and "https://" not in html  # nothing from the network
    for record in lines:
        assert f'src="{record["path"]}"' in html and f'src="{record["spectrogram"]}"' in html


@pytest.mark.slow
def test_models_equal_to_the_base_are_judged_no_detectable_change_on_every_metric(evaluation):
    """A copy of the base weights, a LoRA as initialised (lora_B zero) and one trained 2 steps at lr 1e-12."""
    comparison = evaluation["metrics"]["comparison"]
    assert list(comparison) == list(MODELS[1:])
    for name in EQUAL_TO_BASE:
        block = comparison[name]
        assert block["verdict"].startswith("no detectable change"), (name, block["verdict"])
        assert not [k for k, e in block["metrics"].items() if e["changed"]], name
        assert f"{name} against base: no detectable change" in evaluation["stdout"]
    out = evaluation["out"]
    for name in ("same", "fresh"):  # exactly the base's clips (the adapter adds zeros)
        assert all((out / name / p.name).read_bytes() == p.read_bytes() for p in (out / "base").glob("*.wav"))


@pytest.mark.slow
def test_the_trained_adapter_is_a_detectable_change_in_words_and_numbers(evaluation):
    block = evaluation["metrics"]["comparison"]["final"]
    song = block["metrics"]["per_song_fad"]
    assert song["changed"] and song["words"] == "closer to the training music" and song["relative_ci95"][1] < 0
    assert song["pairs"] == len(PROMPTS) * NUM_SAMPLES and song["resampled"] == "per clip (prompts x samples)"
    assert block["verdict"].startswith("closer to the training music: per-song FAD to the training files")
    # 4 evaluation windows: the cross-entropy fell a lot, its interval says so, but 4 units are too few to call it
    ce = block["metrics"]["cross_entropy[eval]"]
    models = evaluation["metrics"]["models"]
    expected = models["final"]["cross_entropy"]["eval"]["ce"] - models["base"]["cross_entropy"]["eval"]["ce"]
    assert ce["delta"] == pytest.approx(expected) and ce["ci95"][1] < 0 and ce["other_side_of_zero"] == 0.0
    assert ce["resampled"] == "per evaluation window" and ce["pairs"] == 4 and ce["resamples"] == 500
    assert not ce["changed"] and "at least 8 are needed" in ce["too_few"]
    assert "too_few" in block["metrics"]["diversity"]  # 2 prompts: per-prompt metrics cannot be called
    assert f"final against base: {block['verdict']}" in evaluation["stdout"]
    for entry in block["metrics"].values():  # the shape the Studio reads
        assert {"label", "delta", "ci95", "other_side_of_zero", "changed"} <= set(entry) and len(entry["ci95"]) == 2
    assert block["bootstrap"]["resamples"] == 500 and evaluation["metrics"]["settings"]["bootstrap_seed"] == 0
    page = Path(evaluation["report"]).read_text()
    assert page.index("final</b> against <b>base</b>: closer to") < page.index('<table id="metrics">')


@pytest.mark.slow
def test_the_model_card_carries_the_verdict(evaluation, trained_run, tmp_path):
    from musicgen_lora.hub.card import build_model_card

    run = tmp_path / "run"
    shutil.copytree(trained_run["output_dir"], run, ignore=shutil.ignore_patterns("checkpoint-*"))
    (run / "evaluation").mkdir()
    shutil.copy(evaluation["out"] / "metrics.json", run / "evaluation" / "metrics.json")
    card = str(build_model_card(run))
    verdict = evaluation["metrics"]["comparison"]["final"]["verdict"]
    assert f"**final** against the base model: {verdict}" in card
    assert "**fresh** against the base model: no detectable change" in card
    assert re.search(r"\|---\|---\|---\|---\|---\|---\|\n\| base \|[^\n]*\|\n\| final \|", card)  # one table


@pytest.mark.slow
def test_base_cross_entropy_equals_each_adapter_with_the_adapter_disabled(evaluation):
    models = evaluation["metrics"]["models"]
    base = models["base"]["cross_entropy"]["eval"]
    for name in ("final", "half"):
        assert models[name]["kind"] == "lora"
        disabled = models[name]["cross_entropy_adapter_disabled"]["eval"]
        for key in ("ce_q1", "ce_q2", "ce_q3", "ce_q4", "ce", "targets"):
            assert disabled[key] == pytest.approx(base[key], abs=1e-6), (name, key)
        assert models[name]["cross_entropy"]["eval"]["targets"] == base["targets"]
    assert evaluation["metrics"]["checks"]["adapter_disabled_ce_max_abs_diff_from_base"]["final"] < 1e-6
    # the adapter was trained on these 4 clips: it must predict their codes better than the base model
    final, half = models["final"]["cross_entropy"]["eval"], models["half"]["cross_entropy"]["eval"]
    assert final["ce"] < half["ce"] < base["ce"]
    assert final["ppl"] == pytest.approx(math.exp(final["ce"]))
    ce_mean = np.mean([base[f"ce_q{k}"] for k in range(1, 5)])
    assert base["ce"] == pytest.approx(ce_mean, rel=1e-6)  # equal-length windows: equal targets per codebook


@pytest.mark.slow
def test_cross_entropy_equals_musicgens_own_loss_on_the_training_labels(
    evaluation, tiny_model_dir, corpus_dir, data_cache_dir
):
    """MusicGen's forward(labels=...) averages each codebook's mean; with windows of equal length that is our ce."""
    from musicgen_lora.config.arguments import DataArguments, ModelArguments
    from musicgen_lora.models.loading import load_model_and_processor
    from musicgen_lora.prepare.cache_keys import module_fingerprint
    from musicgen_lora.train.collator import MusicgenCollator

    from ..prepare.conftest import prepared_split

    model, processor = load_model_and_processor(ModelArguments(model_name_or_path=str(tiny_model_dir)))
    args = DataArguments(dataset_name=str(corpus_dir), data_cache_dir=str(data_cache_dir), max_eval_samples=4)
    windows = prepared_split(args, "train", model, module_fingerprint(model.audio_encoder), True)
    collator = MusicgenCollator(processor.tokenizer, 64, 64, max_frames=1500, random_crop=False)
    batch = collator([windows[i] for i in range(len(windows))])
    with torch.no_grad():
        loss = model.eval()(**batch).loss
    assert float(loss) == pytest.approx(
        evaluation["metrics"]["models"]["base"]["cross_entropy"]["eval"]["ce"], rel=1e-5
    )


@pytest.mark.slow
def test_same_seeds_across_models_and_the_weights_make_the_difference(evaluation):
    out = evaluation["out"]
    # a model folder with the base weights renders byte-identical files and scores the same cross-entropy
    for index in range(len(PROMPTS)):
        for sample in range(NUM_SAMPLES):
            name = f"{index}-{sample}.wav"
            assert (out / "same" / name).read_bytes() == (out / "base" / name).read_bytes()
    models = evaluation["metrics"]["models"]
    assert models["same"]["kind"] == "full" and "cross_entropy_adapter_disabled" not in models["same"]
    assert models["same"]["cross_entropy"]["eval"]["ce"] == pytest.approx(
        models["base"]["cross_entropy"]["eval"]["ce"], abs=1e-6
    )
    base = sf.read(out / "base" / "0-0.wav")[0]
    assert not np.array_equal(base, sf.read(out / "base" / "0-1.wav")[0])  # two samples of one prompt differ
    assert not np.array_equal(base, sf.read(out / "final" / "0-0.wav")[0])  # the adapter changes the output
    records = [json.loads(line) for line in (out / "comparison_results.jsonl").read_text().splitlines()]
    seeds = {(r["prompt_index"], r["sample"]): set() for r in records}
    for record in records:
        seeds[(record["prompt_index"], record["sample"])].add(record["seed"])
    assert all(len(s) == 1 for s in seeds.values())  # every model rendered each prompt with the same seed


@pytest.mark.slow
def test_metric_blocks_are_complete(evaluation):
    for block in evaluation["metrics"]["models"].values():
        frechet = block["frechet"]["eval"]
        for kind, dim in (("encodec_latent", 32), ("descriptor", 32)):
            assert frechet[kind]["value"] >= 0 and frechet[kind]["dim"] == dim
            assert (
                frechet[kind]["generated_clips"] == len(PROMPTS) * NUM_SAMPLES and frechet[kind]["reference_clips"] == 4
            )
        assert block["adherence"]["files_with_target_bpm"] == len(PROMPTS) * NUM_SAMPLES
        assert block["adherence"]["files_with_target_key"] == len(PROMPTS) * NUM_SAMPLES
        assert 0 <= block["adherence"]["key_score_mean"] <= 1
        assert block["health"]["files"] == len(PROMPTS) * NUM_SAMPLES and block["health"]["duration_ratio_min"] == 1.0
        assert (
            len(block["diversity"]["per_prompt"]) == len(PROMPTS)
            and block["diversity"]["pairwise_descriptor_distance_mean"] > 0
        )
        memorisation = block["memorisation"]
        assert memorisation["training_clips"] == 4
        generated_frames = int(DURATION * 50)
        assert (
            0
            <= memorisation["longest_copied_run_frames"]
            <= memorisation["longest_copied_run_frames_q1"]
            <= generated_frames
        )
    assert "not the vggish fad of musicgen's paper" in evaluation["metrics"]["notes"]["frechet"].lower()
    for name, block in evaluation["metrics"]["models"].items():
        for kind in ("encodec_latent", "descriptor"):
            fad_inf = block["frechet"]["eval"][kind]["fad_inf"]
            assert math.isfinite(fad_inf["value"]) and fad_inf["subset_clips"][-1] == len(PROMPTS) * NUM_SAMPLES
        per_song = [r["per_song_fad"] for r in evaluation["records"] if r["model"] == name]
        assert len(per_song) == len(PROMPTS) * NUM_SAMPLES and block["per_song_fad"]["mean"] == pytest.approx(
            np.mean(per_song)
        )
    # no --clap_model: the CLAP metrics are left out with one line naming the option, in the log and metrics.json
    (line,) = [x for x in evaluation["metrics"]["left_out"] if "CLAP" in x]
    assert "left out: give --clap_model FOLDER (laion/larger_clap_music" in line
    assert "clap" not in evaluation["metrics"]["models"]["base"]["frechet"]["eval"]


@pytest.mark.slow
def test_config_mode_reads_everything_back_from_the_training_run(trained_run, half_adapter, tmp_path):
    from evaluate import main

    run = tmp_path / "run"  # the training output, with a best/ checkpoint as load_best_model_at_end keeps it
    shutil.copytree(trained_run["output_dir"], run, ignore=shutil.ignore_patterns("samples", "checkpoint-*"))
    shutil.copytree(half_adapter, run / "best")
    result = main(
        [
            "--config",
            str(run / "finetune_config.json"),
            "--duration",
            "1",
            "--num_samples",
            "1",
            "--max_eval_samples",
            "2",
        ]
    )
    assert Path(result["output_dir"]) == run / "evaluation"
    metrics = result["metrics"]
    assert list(metrics["models"]) == ["base", "final", "best"]
    assert metrics["settings"]["base_model"] == trained_run["argv"][1]
    assert [p["text"] for p in metrics["settings"]["prompts"]] == ["lofi hip hop, piano", "techno, 128 bpm"]
    # the run had no eval split: its training data is used, and labelled as such
    ce = metrics["models"]["final"]["cross_entropy"]["train"]
    assert ce["held_out"] is False and ce["ce"] < metrics["models"]["base"]["cross_entropy"]["train"]["ce"]
    assert metrics["models"]["final"]["memorisation"]["training_clips"] == 4  # the run's max_train_samples
    assert len((run / "evaluation" / "comparison_results.jsonl").read_text().splitlines()) == 6


@pytest.mark.slow
def test_clap_scores_with_a_local_checkpoint(tiny_model_dir, tiny_clap_dir, corpus_dir, data_cache_dir, tmp_path):
    from transformers import ClapModel, ClapProcessor

    from evaluate import main
    from musicgen_lora.audio.io import resample

    clap = tiny_clap_dir
    prompts = tmp_path / "p.json"
    prompts.write_text('["techno, 128 bpm"]')
    result = main([
        "--base_model", str(tiny_model_dir), "--prompts", str(prompts), "--duration", "1", "--num_samples", "2",
        "--output_dir", str(tmp_path / "o"), "--clap_model", str(clap), "--eval_dataset", str(corpus_dir),
        "--max_eval_samples", "2", "--data_cache_dir", str(data_cache_dir),
    ])  # fmt: skip
    # FAD on CLAP embeddings: one 10 s window per second of audio (fadtk's protocol), 48 kHz
    fad = result["metrics"]["models"]["base"]["frechet"]["eval"]["clap"]
    assert fad["generated_clips"] == 2 and fad["generated_frames"] == 2 and fad["value"] >= 0
    assert fad["reference_clips"] == 2 and fad["reference_frames"] >= 2
    assert not [x for x in result["metrics"]["left_out"] if "CLAP" in x]
    records = result["records"]
    assert all(-1 <= r["clap_score"] <= 1 for r in records)
    assert result["metrics"]["models"]["base"]["clap_score_mean"] == pytest.approx(
        np.mean([r["clap_score"] for r in records])
    )
    assert "text-audio similarity" in Path(result["report"]).read_text()
    # the same number by hand: the WAV resampled to CLAP's 48 kHz, cosine of the projected embeddings
    model, processor = ClapModel.from_pretrained(clap).eval(), ClapProcessor.from_pretrained(clap)
    audio, sr = sf.read(tmp_path / "o" / records[0]["path"], dtype="float32")
    inputs = processor(
        text=["techno, 128 bpm"],
        audio=[resample(audio[None], sr, 48000)[0]],
        sampling_rate=48000,
        return_tensors="pt",
        padding=True,
    )
    with torch.no_grad():
        out = model(**inputs)
    expected = torch.nn.functional.cosine_similarity(out.audio_embeds, out.text_embeds).item()
    assert records[0]["clap_score"] == pytest.approx(expected, abs=2e-3)  # the WAV is 16-bit


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["stereo", "melody"])
def test_stereo_and_melody_models_evaluate(variant, request, corpus_dir, tmp_path):
    from evaluate import main

    model_dir = request.getfixturevalue(f"{variant}_model_dir")
    prompts = tmp_path / "p.json"
    prompts.write_text('["techno, 128 bpm"]')
    result = main(
        [
            "--base_model",
            str(model_dir),
            "--prompts",
            str(prompts),
            "--duration",
            "1",
            "--num_samples",
            "1",
            "--eval_dataset",
            str(corpus_dir),
            "--max_eval_samples",
            "2",
            "--train_dataset",
            str(corpus_dir),
            "--max_train_samples",
            "2",
            "--data_cache_dir",
            str(tmp_path / "cache"),
            "--output_dir",
            str(tmp_path / "o"),
        ]
    )
    channels = 2 if variant == "stereo" else 1
    assert sf.info(tmp_path / "o" / "base" / "0-0.wav").channels == channels
    block = result["metrics"]["models"]["base"]
    assert math.isfinite(block["cross_entropy"]["eval"]["ce"]) and block["cross_entropy"]["eval"]["targets"] > 0
    assert block["frechet"]["eval"]["encodec_latent"]["generated_frames"] == 50 * channels
    assert result["records"][0]["generated_frames"] == 50 and block["memorisation"]["training_clips"] == 2


@pytest.mark.slow
def test_a_prepared_dataset_gives_the_same_cross_entropy_as_its_audio_folder(
    evaluation, tiny_model_dir, corpus_dir, data_cache_dir, tmp_path
):
    """--eval_dataset can be a save_to_disk folder of codes + captions; its reference audio is decoded from the
    codes."""
    from evaluate import main
    from musicgen_lora.config.arguments import DataArguments, ModelArguments
    from musicgen_lora.models.loading import load_model_and_processor
    from musicgen_lora.prepare.cache_keys import module_fingerprint

    from ..prepare.conftest import prepared_split

    model, _ = load_model_and_processor(ModelArguments(model_name_or_path=str(tiny_model_dir)))
    args = DataArguments(dataset_name=str(corpus_dir), data_cache_dir=str(data_cache_dir), max_train_samples=4)
    # the layout `python -m musicgen_lora.prepare` writes: OUTPUT_DIR/prepared_data/{train,eval}/
    prepared = prepared_split(args, "train", model, module_fingerprint(model.audio_encoder), False)
    prepared.save_to_disk(tmp_path / "prepared_data" / "eval")
    prepared.select(range(2)).save_to_disk(tmp_path / "prepared_data" / "train")
    prompts = tmp_path / "p.json"
    prompts.write_text('["jazz"]')
    result = main(
        [
            "--base_model",
            str(tiny_model_dir),
            "--prompts",
            str(prompts),
            "--duration",
            "1",
            "--num_samples",
            "1",
            "--eval_dataset",
            f"prepared={tmp_path / 'prepared_data'}",
            "--train_dataset",
            str(tmp_path / "prepared_data"),
            "--output_dir",
            str(tmp_path / "o"),
        ]
    )
    block = result["metrics"]["models"]["base"]
    assert block["memorisation"]["training_clips"] == 2
    assert block["cross_entropy"]["prepared"]["ce"] == pytest.approx(
        evaluation["metrics"]["models"]["base"]["cross_entropy"]["eval"]["ce"], abs=1e-6
    )
    frechet = block["frechet"]["prepared"]["encodec_latent"]
    assert frechet["reference_clips"] == 4 and frechet["reference_frames"] == 4 * 150


# ------------------------------------------------------------------------------------------------ errors


def _error(capsys, argv) -> str:
    from evaluate import main

    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) >= 1 and err[-1].startswith("error: ")
    return err[-1]


@pytest.mark.slow
def test_the_config_of_a_stopped_run_leaves_no_evaluation_folder(trained_run, tmp_path, capsys):
    """UC23 of the new user's afternoon: the refusal left an empty RUN/evaluation/ behind."""
    run = tmp_path / "run"
    shutil.copytree(trained_run["output_dir"], run, ignore=shutil.ignore_patterns("samples", "adapter_*"))
    message = _error(capsys, ["--config", str(run), "--duration", "0.5", "--num_samples", "1"])
    assert "has not finished: it has no adapter yet" in message
    assert not (run / "evaluation").exists()


def test_an_evaluation_that_fails_removes_the_folder_it_created(tiny_model_dir, tmp_path, capsys):
    songs = tmp_path / "songs"
    write_tone(songs / "a.wav", 2.0)
    (songs / "metadata.jsonl").write_text('{"file_name": 3, "text": "x"}\n')
    (tmp_path / "p.json").write_text('["jazz"]')
    out = tmp_path / "new" / "eval"
    message = _error(capsys, ["--base_model", str(tiny_model_dir), "--prompts", str(tmp_path / "p.json"),
                              "--eval_dataset", str(songs), "--output_dir", str(out)])  # fmt: skip
    assert "'file_name' is 3" in message and not (tmp_path / "new").exists()


def test_clap_without_a_local_checkpoint_is_a_one_line_error(capsys, tiny_model_dir, tmp_path):
    prompts = tmp_path / "p.json"
    prompts.write_text('["jazz"]')
    message = _error(
        capsys,
        [
            "--base_model",
            str(tiny_model_dir),
            "--prompts",
            str(prompts),
            "--output_dir",
            str(tmp_path / "o"),
            "--clap_model",
            "laion/clap-htsat-unfused",
        ],
    )
    assert "--clap_model 'laion/clap-htsat-unfused' is not a local CLAP checkpoint folder" in message
    assert "hf download" in message


@pytest.mark.parametrize(
    "extra,expected",
    [
        (["--model", "final"], "must be NAME=DIR"),
        (["--model", "final=/nonexistent/run"], "folder '/nonexistent/run' not found"),
        (["--model", "base=."], "is not allowed"),
        (["--duration", "0"], "--duration must be in (0, 30]"),
        (["--num_samples", "0"], "--num_samples must be >= 1"),
        (["--guidance_scale", "0.5"], "--guidance_scale must be >= 1"),
        (["--lora_r", "4"], "unrecognized arguments: --lora_r 4"),
    ],
)
def test_bad_options_give_one_line_errors(capsys, tiny_model_dir, tmp_path, extra, expected):
    prompts = tmp_path / "p.json"
    prompts.write_text('["jazz"]')
    base = ["--base_model", str(tiny_model_dir), "--prompts", str(prompts), "--output_dir", str(tmp_path / "o")]
    assert expected in _error(capsys, base + extra)


def test_bad_prompt_files_give_one_line_errors(capsys, tiny_model_dir, tmp_path):
    base = ["--base_model", str(tiny_model_dir), "--output_dir", str(tmp_path / "o"), "--prompts"]
    assert "not found" in _error(capsys, base + [str(tmp_path / "missing.json")])
    (tmp_path / "bad.json").write_text("[1, 2")
    assert "is not valid JSON" in _error(capsys, base + [str(tmp_path / "bad.json")])
    (tmp_path / "num.json").write_text("[3]")
    assert "must be a non-empty string" in _error(capsys, base + [str(tmp_path / "num.json")])
    assert "no prompts" in _error(capsys, base[:-1])


# ------------------------------------------------------------------------------------------------ browser


def _chromium_run(binary: str, page: Path, profile: Path, *args: str) -> str:
    command = [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--mute-audio",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=10000",
        *args,
        page.resolve().as_uri(),
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": str(profile)}
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@pytest.mark.slow
@pytest.mark.browser
def test_report_loads_in_a_real_browser_and_every_audio_can_play(chromium, evaluation, tmp_path):
    page = Path(evaluation["report"])
    dom = _chromium_run(chromium, page, tmp_path / "profile", "--dump-dom")
    root = re.search(r"<html[^>]*>", dom).group(0)
    files = len(MODELS) * len(PROMPTS) * NUM_SAMPLES
    assert f'data-audio-ready="{files}/{files}"' in root, root
    assert f'data-images-ready="{files}/{files}"' in root, root
    assert "data-missing" not in root, root
    audio_tags = re.findall(r"<audio[^>]*>", dom)
    assert len(audio_tags) == files
    for tag in audio_tags:
        assert 'data-ready="1"' in tag and "data-error" not in tag, tag
        assert float(re.search(r'data-duration="([^"]+)"', tag).group(1)) == pytest.approx(DURATION, abs=0.01)
    # a screenshot of the page, kept as a test artefact
    shot = tmp_path / "report.png"
    _chromium_run(
        chromium,
        page,
        tmp_path / "profile-shot",
        "--hide-scrollbars",
        "--window-size=1280,2000",
        f"--screenshot={shot}",
    )
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    artifacts = ROOT / "tests" / "artifacts"
    ignored = subprocess.run(["git", "check-ignore", "-q", str(artifacts / "report.png")], cwd=ROOT).returncode == 0
    if ignored:
        artifacts.mkdir(exist_ok=True)
        shutil.copy(shot, artifacts / "report.png")


@pytest.mark.slow
@pytest.mark.browser
def test_the_browser_check_notices_a_missing_file(chromium, evaluation, tmp_path):
    """The same check on a copy of the page with one WAV and one PNG deleted must report both."""
    copy = tmp_path / "eval"
    shutil.copytree(evaluation["out"], copy)
    (copy / "half" / "1-1.wav").unlink()
    (copy / "base" / "0-0.png").unlink()
    dom = _chromium_run(chromium, copy / "report.html", tmp_path / "profile", "--dump-dom")
    root = re.search(r"<html[^>]*>", dom).group(0)
    files = len(MODELS) * len(PROMPTS) * NUM_SAMPLES
    assert f'data-audio-ready="{files - 1}/{files}"' in root, root
    assert f'data-images-ready="{files - 1}/{files}"' in root, root
    missing = re.search(r'data-missing="([^"]*)"', root).group(1).split()
    assert sorted(missing) == ["base/0-0.png", "half/1-1.wav"], root
