"""The comparison with the base model, without a model: the paired bootstrap, the Fréchet statistics (clip
resampling, FAD∞, per-song FAD), the verdict's words, the report's verdict and escaping, and the options. All fast:
synthetic numbers only."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

from musicgen_lora.evaluate import report
from musicgen_lora.evaluate.arguments import MIN_CLIPS
from musicgen_lora.evaluate.bootstrap import ClipResamples, Interval, paired_mean, window_resamples
from musicgen_lora.evaluate.cli import build_parser
from musicgen_lora.evaluate.comparison import Comparison, Evidence, verdict
from musicgen_lora.evaluate.frechet import (
    ClipStats,
    Gaussian,
    fad_infinity,
    frechet_distance,
    frechet_distance_from_stats,
    per_clip_distances,
)

PROMPTS, SAMPLES = 8, 4


# ------------------------------------------------------------------------------------------------ the bootstrap


def test_resamples_draw_clip_pairs_and_prompts_and_the_seed_fixes_them():
    draws = ClipResamples.draw(PROMPTS, SAMPLES, 500, seed=0)
    assert draws.clip_counts.shape == (500, PROMPTS * SAMPLES) and draws.prompt_counts.shape == (500, PROMPTS)
    assert (draws.clip_counts.sum(axis=1) == PROMPTS * SAMPLES).all() and (
        draws.prompt_counts.sum(axis=1) == PROMPTS
    ).all()
    assert draws.clip_counts.mean(axis=0) == pytest.approx(np.ones(PROMPTS * SAMPLES), abs=0.15)  # every pair alike
    again = ClipResamples.draw(PROMPTS, SAMPLES, 500, seed=0)
    assert np.array_equal(again.clip_counts, draws.clip_counts)  # the seed fixes the resamples
    assert not np.array_equal(ClipResamples.draw(PROMPTS, SAMPLES, 500, seed=1).clip_counts, draws.clip_counts)


def test_the_interval_covers_a_known_shift_about_95_times_in_100():
    """Paired clips: the same prompt effect on both sides, a true shift of 0.3; the 95 % interval must hold it about
    95 % of the time over many simulated evaluations (a coverage check of the whole method)."""
    rng = np.random.default_rng(0)
    covered, trials = 0, 200
    draws = ClipResamples.draw(PROMPTS, SAMPLES, 400, seed=1)
    for _ in range(trials):
        prompt_effect = np.repeat(rng.normal(0, 2.0, PROMPTS), SAMPLES)  # large, and cancelled by the pairing
        base = prompt_effect + rng.normal(0, 1.0, PROMPTS * SAMPLES)
        other = prompt_effect + 0.3 + rng.normal(0, 1.0, PROMPTS * SAMPLES)
        _, _, delta, replicates, _, pairs = paired_mean(base, other, draws.clip_counts)
        interval = Interval.of(delta, replicates, pairs)
        covered += interval.low <= 0.3 <= interval.high
        assert pairs == PROMPTS * SAMPLES
    assert 0.88 <= covered / trials <= 0.99, covered


def test_identical_values_give_a_zero_interval_and_pairs_only_count_both_sides():
    draws = ClipResamples.draw(PROMPTS, SAMPLES, 300, seed=0)
    values = np.arange(PROMPTS * SAMPLES, dtype=float)
    _, _, delta, replicates, _, _ = paired_mean(values, values.copy(), draws.clip_counts)
    interval = Interval.of(delta, replicates, PROMPTS * SAMPLES)
    assert (interval.delta, interval.low, interval.high, interval.other_side_of_zero) == (0, 0, 0, 1.0)
    assert not interval.excludes_zero()
    other = values + 1.0
    other[:5] = np.nan  # no tempo found in 5 clips of the adapter: those 5 pairs are left out on both sides
    base_mean, other_mean, delta, _, _, pairs = paired_mean(values, other, draws.clip_counts)
    assert pairs == PROMPTS * SAMPLES - 5 and delta == pytest.approx(1.0)
    assert base_mean == pytest.approx(values[5:].mean())


@pytest.mark.parametrize("units", [4, 8, 16])
def test_nothing_changed_is_called_a_change_about_one_time_in_twenty_or_less(units):
    """Paired differences that are pure noise: the interval excludes zero in at most ~5 % of evaluations at 8 units
    or more (the expanded percentile interval), and never with fewer than 8 (where a plain percentile interval
    would call 'changed' whenever every difference has one sign: 12.5 % of the time at 4)."""
    rng = np.random.default_rng(units)
    draws = ClipResamples.draw(units, 1, 1000, seed=0)
    calls = 0
    for _ in range(400):
        base, other = rng.normal(0, 1, units), rng.normal(0, 1, units)
        _, _, delta, replicates, _, pairs = paired_mean(base, other, draws.clip_counts)
        calls += Interval.of(delta, replicates, pairs).excludes_zero()
    assert calls / 400 <= (0.0 if units < 8 else 0.075), calls


def test_window_resamples_are_plain_draws_with_replacement():
    counts = window_resamples(7, 1000, seed=3)
    assert counts.shape == (1000, 7) and (counts.sum(axis=1) == 7).all()
    assert counts.mean(axis=0) == pytest.approx(np.ones(7), abs=0.15)


# ------------------------------------------------------------------------------------------------ Fréchet


def _clips(rng: np.random.Generator, count: int, frames: int, dim: int, shift: float = 0.0) -> list[np.ndarray]:
    return [rng.standard_normal((frames, dim)) + shift for _ in range(count)]


def test_clip_statistics_give_the_frame_level_distance_of_any_multiset_of_clips():
    rng = np.random.default_rng(0)
    clips = _clips(rng, 6, 40, 5)
    reference_frames = rng.standard_normal((300, 5)) + 0.4
    reference = Gaussian(reference_frames.mean(0), np.cov(reference_frames, rowvar=False))
    stats = ClipStats.of(clips)
    weights = np.array([[1, 1, 1, 1, 1, 1], [2, 0, 1, 0, 3, 0]], dtype=float)
    by_stats = stats.distances(reference, weights)
    assert by_stats[0] == pytest.approx(frechet_distance(np.concatenate(clips), reference_frames), rel=1e-9)
    multiset = np.concatenate([clips[0], clips[0], clips[2], clips[4], clips[4], clips[4]])
    assert by_stats[1] == pytest.approx(frechet_distance(multiset, reference_frames), rel=1e-9)
    per_song = per_clip_distances(stats, reference)
    assert per_song[3] == pytest.approx(frechet_distance(clips[3], reference_frames), rel=1e-9)
    assert frechet_distance_from_stats([1.0], [[4.0]], [-2.0], [[9.0]]) == pytest.approx(10.0)


def test_fad_infinity_removes_most_of_the_small_sample_bias():
    """Two sets drawn from one Gaussian: the true distance is 0; with 20 clips of 10 frames in 16 dimensions the plain
    distance is biased well above 0, the extrapolation to infinitely many frames much less."""
    rng = np.random.default_rng(5)
    dim = 16
    reference = Gaussian(np.zeros(dim), np.eye(dim))
    plain, extrapolated = [], []
    for _ in range(10):
        stats = ClipStats.of(_clips(rng, 20, 10, dim))
        plain.append(stats.distances(reference, np.ones((1, 20)))[0])
        found = fad_infinity(stats, reference, seed=int(rng.integers(1 << 30)))
        extrapolated.append(found["values"][0])
        assert found["sizes"][0] == 4 and found["sizes"][-1] == 20
    assert np.mean(plain) > 0.3
    assert abs(np.mean(extrapolated)) < 0.35 * np.mean(plain)


# ------------------------------------------------------------------------------------------------ the comparison


def _evidence(rng: np.random.Generator, loudness_shift: float = 0.0, latent_shift: float = 0.0,
              same_as: Evidence | None = None) -> Evidence:  # fmt: skip
    """A model's evidence on the PROMPTS x SAMPLES grid (two evaluation windows, a 4-dimensional latent)."""
    if same_as is not None:
        return Evidence([dict(r) for r in same_as.records], dict(same_as.windows), list(same_as.diversity),
                        dict(same_as.clip_stats))  # fmt: skip
    base_rng = np.random.default_rng(11)  # the paired part: each clip's own value, the same on both sides
    loudness = -20 + base_rng.normal(0, 2, PROMPTS * SAMPLES) + loudness_shift + rng.normal(0, 0.2, PROMPTS * SAMPLES)
    records = [{"loudness_lufs": float(v), "copy_score": 0.0, "tempo_rel_error": None} for v in loudness]
    sums = base_rng.uniform(3, 4, (6, 4)) * 100
    windows = {"eval": (sums, np.full((6, 4), 100.0))}
    clips = [f + latent_shift for f in _clips(base_rng, PROMPTS * SAMPLES, 30, 4)]
    return Evidence(records, windows, list(base_rng.uniform(1, 2, PROMPTS)), {"encodec_latent": ClipStats.of(clips)})


@pytest.fixture(scope="module")
def compared() -> dict:
    rng = np.random.default_rng(0)
    base = _evidence(rng)
    references = {"eval": {"encodec_latent": Gaussian(np.zeros(4), np.eye(4))}}
    comparison = Comparison(base, references, PROMPTS, SAMPLES, resamples=400, seed=0)
    return {
        "same": comparison.compare(_evidence(rng, same_as=base)),
        "louder": comparison.compare(_evidence(rng, loudness_shift=3.0)),
        "shifted": comparison.compare(_evidence(rng, latent_shift=1.0)),
    }


def test_an_identical_model_is_no_detectable_change_on_every_metric(compared):
    block = compared["same"]
    assert block["verdict"].startswith("no detectable change")
    for key, entry in block["metrics"].items():
        assert entry["delta"] == 0 and entry["ci95"] == [0, 0] and not entry["changed"], key
    assert {"cross_entropy[eval]", "ce_q1[eval]", "frechet_encodec_latent[eval]", "fad_inf_encodec_latent[eval]",
            "loudness_lufs", "copy_score", "diversity"} <= set(block["metrics"])  # fmt: skip
    # no tempo in either model's clips: no pairs, so no interval, and it says why instead of inventing one
    assert "tempo_rel_error" not in block["metrics"]
    assert any(e["metric"] == "tempo_rel_error" and "both models" in e["why"] for e in block["without_interval"])
    assert any(e["metric"] == "memorisation.copy_score" for e in block["without_interval"])
    assert block["bootstrap"]["resamples"] == 400 and block["bootstrap"]["seed"] == 0


def test_a_louder_model_is_called_louder_with_its_interval(compared):
    block = compared["louder"]
    loudness = block["metrics"]["loudness_lufs"]
    assert loudness["changed"] and loudness["direction"] == "higher" and loudness["words"] == "louder"
    assert loudness["ci95"][0] > 2.5 and loudness["ci95"][1] < 3.5 and loudness["other_side_of_zero"] == 0.0
    assert re.match(r"louder: loudness \+3\.\d \[\+\d\.\d, \+\d\.\d\] LU", block["verdict"]), block["verdict"]
    assert "unchanged: " in block["verdict"] and "copy score 0.00 [0.00, 0.00]" in block["verdict"]
    assert not block["metrics"]["frechet_encodec_latent[eval]"]["changed"]


def test_a_shifted_model_is_further_from_the_reference_in_percent(compared):
    entry = compared["shifted"]["metrics"]["frechet_encodec_latent[eval]"]
    assert entry["changed"] and entry["verdict"] == "worse" and entry["words"] == "further from the 'eval' music"
    assert entry["relative"] > 1 and entry["relative_ci95"][0] > 0  # the latents moved by 1 in each of 4 dimensions
    assert entry["resamples"] == 400 and entry["resampled"] == "clips resampled"
    assert (
        "further from the 'eval' music: Fréchet distance to 'eval' (EnCodec latents) +"
        in compared["shifted"]["verdict"]
    )


def test_a_fall_never_reads_as_more_than_minus_100_percent():
    rng = np.random.default_rng(1)
    base = rng.uniform(0.5, 3.0, PROMPTS * SAMPLES)
    draws = ClipResamples.draw(PROMPTS, SAMPLES, 500, seed=0)
    from musicgen_lora.evaluate.comparison import CLIP_METRICS, _entry

    b, o, d, replicates, base_replicates, pairs = paired_mean(base, base * 0.05, draws.clip_counts)
    entry = _entry(CLIP_METRICS["per_song_fad"], b, o, d, replicates, "per clip", pairs, base_replicates)
    assert -1.0 < entry["relative_ci95"][0] <= entry["relative"] <= entry["relative_ci95"][1] < 0
    assert entry["words"] == "closer to the training music"


def test_one_unit_has_no_interval_and_says_so():
    from musicgen_lora.evaluate.comparison import CLIP_METRICS, _entry, describe

    entry = _entry(CLIP_METRICS["loudness_lufs"], -20.0, -19.0, 1.0, np.ones(100), "per clip (prompts x samples)", 1,
                   np.full(100, -20.0))  # fmt: skip
    assert not entry["changed"] and "1 clip pairs resampled" in entry["too_few"]
    assert describe(entry) == "loudness +1.0 [n/a, n/a] LU"
    assert (
        describe(json.loads(json.dumps(entry).replace("NaN", "null"))) == "loudness +1.0 [n/a, n/a] LU"
    )  # as read back
    distance = _entry(CLIP_METRICS["per_song_fad"], 2.0, 1.0, -1.0, -np.ones(100), "per clip (prompts x samples)", 1,
                      np.full(100, 2.0))  # fmt: skip
    assert describe(json.loads(json.dumps(distance).replace("NaN", "null"))).endswith("−50 % [n/a %, n/a %]")


def test_a_change_below_the_resolution_is_no_change():
    entry = {"label": "cross-entropy", "changed": False, "headline": True, "delta": 3e-6, "ci95": [2e-6, 4e-6],
             "resolution": 1e-4, "unit": " nats"}  # fmt: skip
    assert verdict({"cross_entropy[eval]": entry}).startswith("no detectable change")


# ------------------------------------------------------------------------------------------------ the report


def test_the_report_puts_each_verdict_first_and_escapes_what_users_wrote(compared):
    metrics = {
        "settings": {"base_model": "<b>model</b>", "prompts": [{"text": "lofi <script>alert(1)</script> & jazz"}],
                     "num_samples": 1, "duration": 1.0, "seed": 0, "guidance_scale": 3.0},
        "models": {"base": {"health": {}, "adherence": {}, "diversity": {}}, "louder": {"health": {}, "adherence": {},
                                                                                      "diversity": {}}},
        "comparison": {"louder": compared["louder"]},
        "left_out": ["FAD on CLAP embeddings ... left out: give --clap_model FOLDER"],
        "notes": {"frechet": "note"},
    }  # fmt: skip
    records = [{"model": m, "prompt_index": 0, "sample": 0, "path": f"{m}/0-0.wav", "spectrogram": f"{m}/0-0.png",
                "duration": 1.0} for m in ("base", "louder")]  # fmt: skip
    page = report.render_report(metrics, records)
    verdict_at = page.index('<section id="verdict">')
    assert verdict_at < page.index('<table id="metrics">') < page.index('<table id="clips">')
    assert "<b>louder</b> against <b>base</b>: louder: loudness +3." in page
    assert "lofi &lt;script&gt;alert(1)&lt;/script&gt; &amp; jazz" in page and "<script>alert(1)" not in page
    assert "&lt;b&gt;model&lt;/b&gt;" in page
    assert f"fewer than {MIN_CLIPS}: intervals are wide" in page  # 1 clip per model
    assert "left out: give --clap_model FOLDER" in page
    assert '<td class="num changed">' in page or '<td class="num better">' in page or "num worse" in page


# ------------------------------------------------------------------------------------------------ the options


def test_options_are_defined_once_and_help_says_what_fewer_clips_cost(capsys):
    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for option in ("--num_samples", "--bootstrap_resamples", "--generation_batch_size", "--clap_model",
                   "--copy_threshold", "--train_dataset"):  # fmt: skip
        assert option in text
    assert f"enough for {MIN_CLIPS} clips per model" in text and "intervals widen as 1/sqrt(clips)" in text
    assert "fewer than 8 clips no change is called at all" in text
    assert "laion/larger_clap_music" in text
    args = parser.parse_args(["--model", "a=x", "--model", "b=y", "c=z", "--skip_melody", "--duration", "2"])
    assert args.model == ["a=x", "b=y", "c=z"] and args.skip_melody is True and args.duration == 2.0


@pytest.mark.parametrize(
    "words,expected",
    [(["--duration", "nan"], "--duration: 'nan' is not a finite number"),
     (["--seed=-1"], "--seed: -1 is not between 0"),
     (["--num_samples", "two"], "invalid int value: 'two'"),
     (["--lora_r", "4"], "unrecognized arguments: --lora_r 4")],
)  # fmt: skip
def test_bad_option_values_are_one_line_errors(words, expected):
    from musicgen_lora.errors import UserError

    with pytest.raises(UserError, match=re.escape(expected)):
        build_parser().parse_args(words)


def test_default_samples_reach_the_minimum_number_of_clips(tmp_path):
    from musicgen_lora.evaluate.cli import _checked_numbers

    args = build_parser().parse_args([])
    for prompts, samples in (
        (1, MIN_CLIPS),
        (4, MIN_CLIPS // 4),
        (MIN_CLIPS, 2),
        (100, 2),
        (5, math.ceil(MIN_CLIPS / 5)),
    ):
        assert _checked_numbers(args, {}, prompts)["num_samples"] == samples
    assert _checked_numbers(build_parser().parse_args(["--num_samples", "3"]), {}, 4)["num_samples"] == 3
    json.dumps(_checked_numbers(args, {}, 2))  # plain values
