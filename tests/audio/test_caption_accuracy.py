"""Captions you can trust: tempo and key of real music (rendered with real instrument samples), cost, confidence.

The real-music fixture renders a small subset of ``bench/key_tempo_corpora.py`` (Bach chorales in six
instrumentations, Irish/American fiddle tunes and German folk songs in four): it needs ``pip install music21
pyfluidsynth`` and ``apt-get install -y fluidsynth fluid-soundfont-gm``, and skips with the reason otherwise. The
thresholds sit below the full-corpus figures of bench/RESULTS.md ("Captions you can trust") with margin for a
subset of 29 excerpts.
"""

from __future__ import annotations

import math
import time
import tracemalloc

import numpy as np
import pytest

from musicgen_lora.audio.key import KEY_CONFIDENCE_THRESHOLD, estimate_key
from musicgen_lora.audio.tempo import TEMPO_CONFIDENCE_THRESHOLD, estimate_tempo

from ..conftest import load_bench_script
from ..system_packages import fluidsynth_or_skip

pytestmark = pytest.mark.slow  # renders real music with FluidSynth

SR = 32000


def _harmonic(freq: float, seconds: float, amplitude: float, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return sum(amplitude / h * np.sin(2 * np.pi * h * freq * t) for h in range(1, 7) if h * freq < sr / 2)


@pytest.fixture(scope="session")
def real_music(tmp_path_factory):
    """(manifest rows, folder): the `test`-split pieces (never seen when the key model was fitted) among the first 45
    chorales and 45 folk tunes, excerpts of 20 s rendered by FluidSynth: 19 chorales and 10 folk tunes."""
    corpora = load_bench_script("key_tempo_corpora")
    fluidsynth_or_skip(corpora.DEFAULT_SOUNDFONT)
    folder = tmp_path_factory.mktemp("real_music")
    rows = corpora.build(
        folder, ["chorales", "folk"], per_corpus=45, seconds=20.0, sr=22050, log=lambda *_: None, split="test"
    )
    return rows, folder


def _evaluate(rows, folder):
    module = load_bench_script("key_tempo_accuracy")
    return module.evaluate(folder, module.current, rows=rows)


def test_tempo_and_key_of_real_music(real_music):
    rows, folder = real_music
    assert len(rows) >= 20 and {r["corpus"] for r in rows} == {"chorales", "folk"}
    results = _evaluate(rows, folder)
    tempo = [r["tempo_hit"] for r in results if "tempo_hit" in r]
    key_exact = [r["key_hit"] for r in results if "key_hit" in r]
    mirex = [r["key_score"] for r in results if "key_score" in r]
    misses = [
        (r["piece"], r["instrumentation"], r["bpm"], r.get("est_bpm"), r["key"], r.get("est_key"))
        for r in results
        if not (r.get("tempo_hit") and r.get("key_hit"))
    ]
    # full corpora (bench/RESULTS.md, 30 s excerpts, test split): tempo 94 %, key exact 89 %, MIREX 0.93; this subset
    # of 20 s excerpts measured tempo 97 % (28 of 29; 26 played without metric stress), key exact 79 % (23 of 29),
    # MIREX 0.88 (the profiles before the fitted model: 72 %, 0.86, on the unstressed renders); the thresholds leave
    # room for two more misses
    assert np.mean(tempo) >= 0.85, misses
    # what the captions say: one of the tempi they name right (two where the tempo is in doubt, none below the
    # confidence threshold) on 85 % at least, and most of them name one tempo (bench/RESULTS.md "Captions at every
    # tempo": 24 % two-valued on the tune split of these corpora at their genres' tempi)
    assert np.mean([r["caption_hit"] for r in results if "caption_hit" in r]) >= 0.85, misses
    assert np.mean([r["caption_two_valued"] for r in results if "caption_two_valued" in r]) <= 0.5, misses
    assert np.mean(key_exact) >= 0.72, misses
    assert np.mean(mirex) >= 0.85, misses
    # most wrong keys of a plain chroma were a fifth up (before: 4 in 10); the note transcription leaves fewer
    fifths = sum(r.get("key_relation") == "fifth" for r in results)
    assert fifths <= 0.25 * len(key_exact), misses


def test_confidences_are_probabilities(real_music):
    # (on real music they separate right from wrong only weakly: bench/RESULTS.md; what they must do is below)
    results = _evaluate(*real_music)
    for field in ("key_conf", "tempo_conf"):
        values = [r[field] for r in results if r.get(field) is not None]
        assert values and all(0.0 <= v <= 1.0 for v in values), field
    # most real music keeps its fields
    assert np.mean([r["tempo_conf"] >= TEMPO_CONFIDENCE_THRESHOLD for r in results if "tempo_conf" in r]) >= 0.8
    assert np.mean([r["key_conf"] >= KEY_CONFIDENCE_THRESHOLD for r in results if "key_conf" in r]) >= 0.7


def test_noise_a_drone_and_silence_get_low_confidence():
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(20 * SR) * 0.1
    drone = _harmonic(110.0, 20.0, 0.3)  # one sustained note: no pulse, and A major vs A minor undecided
    for name, clip in (("noise", noise), ("drone", drone)):
        tempo = estimate_tempo(clip, SR)
        key = estimate_key(clip, SR)
        assert tempo is None or tempo.confidence < TEMPO_CONFIDENCE_THRESHOLD, (name, tempo)
        assert key is None or key.confidence < KEY_CONFIDENCE_THRESHOLD, (name, key)
    assert estimate_tempo(np.zeros(5 * SR), SR) is None and estimate_key(np.zeros(5 * SR), SR) is None


def _sixty_seconds_of_music() -> np.ndarray:
    # I-IV-V-I in D major on harmonic tones with a click on every beat at 120 bpm: real work for both estimators
    chords, beat = [], 0.5
    for root in (62, 67, 69, 62):
        notes = (root, root + 4, root + 7, root - 12)
        chords.append(sum(_harmonic(440 * 2 ** ((m - 69) / 12), 2.0, 0.15) for m in notes))
    bar = np.concatenate(chords)
    audio = np.tile(bar, math.ceil(60 * SR / len(bar)))[: 60 * SR]
    clicks = np.zeros_like(audio)
    click = np.exp(-np.arange(int(0.02 * SR)) / (0.003 * SR)) * np.sin(
        2 * np.pi * 2000 * np.arange(int(0.02 * SR)) / SR
    )
    for start in range(0, len(audio) - len(click), int(beat * SR)):
        clicks[start : start + len(click)] += click
    return (audio + 0.5 * clicks).astype(np.float32)


def test_cost_of_tempo_and_key_for_a_60_s_excerpt():
    audio = _sixty_seconds_of_music()
    tracemalloc.start()
    tempo = estimate_tempo(audio, SR)
    key = estimate_key(audio, SR)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert tempo is not None and abs(tempo.bpm - 120) <= 2.4 and key is not None and key.key == "D major", (tempo, key)
    # the goal: <= 50 MB beyond the excerpt itself (7.7 MB of float32), measured exactly
    assert peak <= 50 * 2**20, f"{peak / 2**20:.1f} MB"
    best = math.inf
    for _ in range(2):
        start = time.process_time()  # CPU time: other processes on a shared machine do not count
        estimate_tempo(audio, SR), estimate_key(audio, SR)
        best = min(best, time.process_time() - start)
    # the goal is 0.5 s on one idle core (bench/RESULTS.md); 3x that leaves room for slower CPUs and threads
    assert best <= 1.5, f"{best:.2f} s"
