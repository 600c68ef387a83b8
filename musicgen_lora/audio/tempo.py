"""Tempo of a piece of audio, with a confidence: an onset envelope, a periodicity salience over tempi, and a
documented choice among the double, the half and a triple metre's other levels.

* **Onset envelopes** (:func:`onset_envelopes`): spectral flux in 36 log-spaced bands, 100 frames per second, and
  the rise of the bass's loudness (:func:`bass_envelope`).
* **Salience** (:func:`tempo_salience`): each candidate tempo is scored by the envelope's autocorrelation at one to
  four beat periods (favours the beat and its slower multiples) times its Fourier magnitude at the beat frequency
  and its harmonics (favours the beat and its faster multiples), so octave errors in either direction are penalised.
* **Double/half rule** (:func:`tempo_from_envelope`): see the function.
* **The beat among the pulse's relatives** (:func:`tempo_candidates`): the pulse's octave pair (85 and 170 bpm) and
  those of a triple metre's other levels (x 3/2, x 2/3) weighed by two logistic regressions fitted on real music at
  every tempo (:func:`metre_probabilities`, :func:`fast_octave_probability`); where the tempo stays in doubt the
  estimate names the next most probable too (``alternative``), and a caption says both ("85 or 170 bpm", "60 or 90
  bpm").

Accuracy and cost on real music: bench/RESULTS.md ("Captions you can trust", "Captions at every tempo").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import maximum_filter1d
from scipy.signal import resample_poly

from .analysis import to_mono32

ONSET_FRAME_RATE = 100.0  # onset-envelope frames per second
BASS_BAND_HZ = (30.0, 200.0)  # the bass envelope's band (bass_envelope)


MIN_BPM, MAX_BPM = 40.0, 240.0


# The prior over tempi (log-normal: centre, one standard deviation in octaves), which decides between a tempo and its
# double or half when their periodicity is alike. Chosen on the `tune` half of the corpora (92 % within 4 % there;
# centre 80: 88 %, 100: 90 %, 110: 85 %; 0.5 or 1 octave wide: 90 %, 88 %); the corpora's own tempi were drawn per
# genre (chorales 60-110, dance tunes 84-140, songs 66-126; OpenMSX as composed, 64-200), so the centre reflects them.
TEMPO_PRIOR_BPM, TEMPO_PRIOR_OCTAVES = 90.0, 0.7


# Rhythmic clarity: the envelope's autocorrelation at the chosen beat period (mean over 1-4 beats) times the square
# root of the number of beats heard, a z-score-like figure that does not grow for noise as excerpts get longer. White
# noise and a drone of 4-60 s reach 0.11-0.25; 98 % of the corpora's excerpts are above 0.28, the median 2.2. Mapped
# linearly from TEMPO_CLEAR_PULSE[0] (clarity 0) to [1] (clarity 1).
TEMPO_CLEAR_PULSE = (0.25, 0.75)


# Below this a caption leaves the tempo out. Every noise and drone measured scores 0 (no pulse); on the corpora
# (bench/RESULTS.md) it drops 10 of 632 right tempi, those with the faintest pulse, and none of the 44 wrong ones:
# those are octave and metre errors with a clear pulse, which no confidence built from the pulse can see. (With the
# octave decision the octave's doubt is said in the caption instead: "Captions at every tempo" in RESULTS.md.)
TEMPO_CONFIDENCE_THRESHOLD = 0.1


# The double/half rule (see tempo_from_envelope): a tempo of at least HALVE_FROM_BPM whose beats alternate strong and
# weak (the weaker half carries under OFFBEAT_CONTRAST of the stronger half's onset strength) with nothing between
# them (under EMPTY_HALF_BEATS of the beats' strength at the half-beats) is the eighth notes of a beat half as fast.
# Measured on the 676 excerpts of bench/key_tempo_corpora.py: it halves 6 doubled chorales (piano, the band with
# drums: their half-beats carry 0.03-0.08) for 1 tune made wrong. EMPTY_HALF_BEATS was 0.5 until the corpora were
# played with metric stress; reels and hornpipes, beats 1 and 3 stressed, then alternate too, but with eighth notes
# between their beats (0.12-0.48): at 0.5 five were halved. 0.15 was chosen on the `tune` half (0.1: one excerpt
# more there; played without stress, the chorales' half-beats reach 0.12: 11 halved, none made wrong). Syncopated
# music (bossa nova, strong half-beats) is left alone.
HALVE_FROM_BPM = 110.0
OFFBEAT_CONTRAST = 0.55
EMPTY_HALF_BEATS = 0.15


def onset_envelopes(audio: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray]:
    """Onset strength at :data:`ONSET_FRAME_RATE` frames per second (1-D, >= 0, the same frames): spectral flux over
    36 bands, and the bass's (:func:`bass_envelope`; read by :func:`octave_features`).

    The magnitude spectrogram is computed 128 frames at a time, so memory stays a few MB for any length (librosa's
    onset_strength alone peaks at 44 MB on 60 s, bench/RESULTS.md).
    """
    x = to_mono32(audio)
    hop = max(1, int(round(sr / ONSET_FRAME_RATE)))
    n_fft = 1 << int(math.ceil(math.log2(4 * hop)))
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    # 36 log-spaced bands from 30 Hz to 8 kHz (or Nyquist): each band counts once, whatever its width
    edges = np.geomspace(30.0, min(8000.0, sr / 2), 37)
    band_of = np.searchsorted(edges, freqs) - 1
    keep = (band_of >= 0) & (band_of < 36)
    pooling = np.zeros((len(freqs), 36), np.float32)
    pooling[np.flatnonzero(keep), band_of[keep]] = 1.0
    counts = np.maximum(pooling.sum(axis=0), 1)
    padded = np.pad(x, (n_fft // 2, n_fft // 2))
    count = 1 + max(0, (len(padded) - n_fft) // hop)
    window = np.hanning(n_fft + 2)[1:-1].astype(np.float32)
    bands = np.empty((count, 36), np.float32)
    for first in range(0, count, 128):  # 128 frames at a time: a few MB whatever the length
        index = np.arange(first, min(count, first + 128))
        frames = padded[(index * hop)[:, None] + np.arange(n_fft)[None, :]] * window
        bands[index] = np.abs(np.fft.rfft(frames, axis=1)) @ pooling
    bands /= counts
    bands = np.log1p(1000.0 * bands / max(float(bands.max()), 1e-12))
    flux = np.maximum(np.diff(bands, axis=0, prepend=bands[:1]), 0.0).mean(axis=1).astype(np.float64)
    return _pulses(flux), bass_envelope(x, sr, hop, count)


def bass_envelope(x: np.ndarray, sr: int, hop: int, count: int) -> np.ndarray:
    """How the loudness of the bass (BASS_BAND_HZ) rises, ``count`` frames ``hop`` samples apart: the bass line's
    and the kick's onsets, which mark the beat more often than a melody's eighth notes do. The mono ``x`` is
    resampled to a rate of at least 800 Hz (``hop`` divided by a whole factor), so that 4 Hz between the frequencies
    of its spectrum cost little (the onset envelope's own bands are 15-20 Hz wide there)."""
    factor = max(d for d in range(1, hop + 1) if hop % d == 0 and sr / d >= 800)
    low = resample_poly(x, 1, factor).astype(np.float32) if factor > 1 else x
    rate, step = sr / factor, hop // factor
    n_fft = 1 << int(math.ceil(math.log2(rate / 4.0)))
    freqs = np.fft.rfftfreq(n_fft, 1.0 / rate)
    band = (freqs >= BASS_BAND_HZ[0]) & (freqs <= BASS_BAND_HZ[1])
    padded = np.pad(low, (n_fft // 2, n_fft // 2 + count * step))
    window = np.hanning(n_fft + 2)[1:-1].astype(np.float32)
    level = np.empty(count)
    for first in range(0, count, 1024):
        index = np.arange(first, min(count, first + 1024))
        frames = padded[(index * step)[:, None] + np.arange(n_fft)[None, :]] * window
        level[index] = np.log1p(np.abs(np.fft.rfft(frames, axis=1))[:, band]).mean(axis=1)
    return _pulses(np.maximum(np.diff(level, prepend=level[:1]), 0.0))


def _pulses(flux: np.ndarray) -> np.ndarray:
    """The flux less its slowly varying part (loudness changes): the pulses."""
    width = int(ONSET_FRAME_RATE * 0.4) | 1
    local = np.convolve(flux, np.ones(width) / width, mode="same")
    return np.maximum(flux - local, 0.0)


def onset_envelope(audio: np.ndarray, sr: int) -> np.ndarray:
    """The onset envelope over all bands (see :func:`onset_envelopes`)."""
    return onset_envelopes(audio, sr)[0]


# The beat among the pulse's relatives (tempo_candidates). The pulse found may be the beat, its double or half (the
# octave: a chorale at 170 quarter notes a minute is the same sound as one at 85 in eighth notes), or a level of a
# triple metre that is no beat (two thirds of a 6/8 beat; one and a half beats, or the bar, of a 3/4). The candidates
# are three octave pairs, SLOW and FAST = 2 x SLOW with SLOW in [50, 100) bpm (octave_pair), one per metre family:
# the pulse's own (x 1), x 3/2 and x 2/3 (METRE_FACTORS; x 3 and x 1/3 are octaves of these). A multinomial logistic
# regression on metre_features gives each family's probability, a logistic regression on octave_features the
# probability that FAST is the beat of its pair; a candidate's probability is their product. Both were fitted by
# bench/tempo_octave_fit.py on the `tune` pieces only, rendered at tempi drawn per genre and uniformly over 50-200
# bpm (bench/RESULTS.md "Captions at every tempo"). The prior's pulse stays the tempo unless its probability is under
# TEMPO_SWITCH (then the most probable candidate is); where the tempo's probability stays under TEMPO_SURE the
# estimate names the next most probable candidate too (``alternative``), and a caption says both, slower first ("85
# or 170 bpm", "60 or 90 bpm"). Both constants chosen on the tune split only, by a rule (RESULTS.md): the single
# value at the genres' tempi within 1 point of the pulse's, two-valued captions at most a third, then the most
# captions right (at 0.2 the single value loses 1.3 points; at 0.8 36 % of captions name two tempi).
OCTAVE_PAIR_BPM = (50.0, 100.0)
OCTAVE_FEATURES = ("salience_fast_over_slow", "slow_octaves_from_90", "fast_beats_heard", "fast_eighths_heard",
                   "fast_beats_even", "slow_half_beats", "slow_beats_even", "fast_bass_beats_heard",
                   "fast_bass_beats_even", "fast_bass_half_beats", "slow_bass_beats_even",
                   "slow_bass_half_beats")  # fmt: skip
OCTAVE_WEIGHTS = (1.780, -1.590, 2.379, 4.434, 1.413, 0.216, 2.509, 2.832, -1.103, 0.024, 3.794, 0.082)
OCTAVE_BIAS = -11.135
METRE_FACTORS = (1.0, 1.5, 2.0 / 3.0)
METRE_FEATURES = ("salience_x3/2", "salience_x2/3", "salience_x3", "double_beats_even", "autocorrelation_3_beats",
                  "autocorrelation_6_beats", "quarter_beats", "bars_of_12_beats_even", "bars_of_6_beats_even",
                  "thirds_of_x2/3")  # fmt: skip
# one row of weights and a bias per family after the first (the pulse's own family scores 0)
METRE_WEIGHTS = ((2.370, -0.558, 0.465, 0.605, -7.500, 1.145, -3.344, 1.551, 4.362, 1.290),
                 (-0.723, 1.325, -0.370, 9.677, -5.807, -1.320, -0.277, 4.256, -1.472, -5.961))  # fmt: skip
METRE_BIAS = (-3.718, -8.942)
TEMPO_SWITCH = 0.1
TEMPO_SURE = 0.75


@dataclass
class TempoEstimate:
    bpm: float
    confidence: float  # in [0, 1]: rhythmic clarity times the probability of the tempi named (tempo_from_envelope)
    salience_ratio: float = math.inf  # the winner's salience over the best candidate a factor 2 away (> 1: clear)
    alternative: float | None = None  # the next most probable tempo, where the tempo is in doubt (see TEMPO_SURE)
    probability: float = 1.0  # the probability that ``bpm``, not its double, half or a metre's other level, is the beat


def autocorrelation(env: np.ndarray) -> np.ndarray:
    """Unbiased autocorrelation of the (mean-removed) envelope, 1 at lag 0, through one zero-padded FFT."""
    env = env - env.mean()
    n = len(env)
    acf = np.fft.irfft(np.abs(np.fft.rfft(env, 2 * n)) ** 2)[:n]
    return acf / np.maximum(n - np.arange(n), 1) / max(acf[0] / n, 1e-12)


def _pulse_autocorrelation(acf: np.ndarray, periods: np.ndarray) -> np.ndarray:
    """Mean autocorrelation at one to four beat periods (those under 70 % of the excerpt), >= 0."""
    n = len(acf)
    total, usable_count = np.zeros_like(periods), np.zeros_like(periods)
    for beats in (1, 2, 3, 4):
        usable = beats * periods < 0.7 * n
        total += np.where(usable, np.interp(beats * periods, np.arange(n), acf), 0.0)
        usable_count += usable
    return np.maximum(total / np.maximum(usable_count, 1), 0.0)


def tempo_salience(env: np.ndarray, bpms: np.ndarray, frame_rate: float = ONSET_FRAME_RATE) -> np.ndarray:
    """Periodicity of an onset envelope at each tempo of ``bpms``: autocorrelation x Fourier magnitude, >= 0.

    The autocorrelation at one to four beat periods favours the beat and its slower multiples; the Fourier magnitude
    at the beat frequency and its 2nd and 4th harmonics favours the beat and its faster multiples; their product
    penalises octave errors in both directions. Both come from one zero-padded FFT each (memory O(frames)).
    """
    acf_score = _pulse_autocorrelation(autocorrelation(env), frame_rate * 60.0 / bpms)
    env = env - env.mean()
    n = len(env)
    # 2**17 points at 100 frames/s: 0.0008 Hz apart, 0.05 bpm; interpolated between them
    size = max(1 << 17, 1 << int(math.ceil(math.log2(n))))
    magnitude = np.abs(np.fft.rfft(env * np.hanning(n), size))
    freqs = np.fft.rfftfreq(size, 1.0 / frame_rate)
    dft_score = sum(w * np.interp(h * bpms / 60.0, freqs, magnitude) for h, w in ((1, 1.0), (2, 0.5), (4, 0.25)))
    dft_score /= max(float(dft_score.max()), 1e-12)
    return acf_score * dft_score


def tempo_prior(bpms: np.ndarray) -> np.ndarray:
    """Log-normal prior over tempi: centred on TEMPO_PRIOR_BPM, TEMPO_PRIOR_OCTAVES wide (one standard deviation)."""
    return np.exp(-0.5 * (np.log2(bpms / TEMPO_PRIOR_BPM) / TEMPO_PRIOR_OCTAVES) ** 2)


def beat_profile(
    env: np.ndarray, bpm: float, fractions: tuple[float, ...] = (0.5,), frame_rate: float = ONSET_FRAME_RATE
) -> tuple[np.ndarray, list[float]]:
    """The onset strength at each beat of a pulse at ``bpm`` (phase chosen where the beats are strongest), and the
    mean strength at each of ``fractions`` of a beat after the beats relative to the beats' (0: nothing there).
    Fewer than 4 beats: no beats, and 0 for each fraction.

    The envelope is folded at the beat period (a comb filter; each beat reads the largest value within 30 ms, for
    timing that is not a sequencer's), so no beat tracker has to be compiled or run.
    """
    period = frame_rate * 60.0 / bpm
    count = int((len(env) - 1) // period)
    if count < 4:
        return np.zeros(0), [0.0] * len(fractions)
    peaks = maximum_filter1d(env, 7)  # 7 frames: +-30 ms
    positions = np.arange(count) * period  # (beats,)
    phases = np.arange(int(period))  # (phases,)
    strength = peaks[np.rint(phases[:, None] + positions[None, :]).astype(int).clip(0, len(env) - 1)]
    best = int(np.argmax(strength.mean(axis=1)))
    beats = strength[best]
    scale = max(float(beats.mean()), 1e-12)
    between = [peaks[np.rint(best + positions + period * f).astype(int).clip(0, len(env) - 1)] for f in fractions]
    return beats, [float(b.mean() / scale) for b in between]


def beat_strengths(env: np.ndarray, bpm: float, frame_rate: float = ONSET_FRAME_RATE) -> tuple[np.ndarray, float]:
    """The onset strength at each beat of a pulse at ``bpm`` and the mean strength half-way between beats relative
    to the beats' (see :func:`beat_profile`)."""
    beats, (half_beats,) = beat_profile(env, bpm, (0.5,), frame_rate)
    return beats, half_beats


def groups_even(beats: np.ndarray, size: int) -> float:
    """How even beats are, grouped ``size`` at a time (a bar's stress makes them uneven): the weakest position's mean
    strength over the strongest's; 1 with fewer than two groups."""
    usable = len(beats) // size * size
    if usable < 2 * size:
        return 1.0
    means = beats[:usable].reshape(-1, size).mean(axis=0)
    return float(means.min() / max(float(means.max()), 1e-12))


def is_eighth_note_pulse(env: np.ndarray, bpm: float, frame_rate: float = ONSET_FRAME_RATE) -> bool:
    """Whether a pulse at ``bpm`` is the eighth notes of a beat half as fast (the double/half rule's test, see
    HALVE_FROM_BPM): its beats alternate strong and weak and nothing happens between them."""
    beats, half_beats = beat_strengths(env, bpm, frame_rate)
    if bpm < HALVE_FROM_BPM or len(beats) < 8:
        return False
    even, odd = float(beats[0::2].mean()), float(beats[1::2].mean())
    return min(even, odd) < OFFBEAT_CONTRAST * max(even, odd) and half_beats < EMPTY_HALF_BEATS


def _salience_near(bpms: np.ndarray, salience: np.ndarray, bpm: float) -> float:
    """The highest salience within 2 % of ``bpm`` (0 outside ``bpms``)."""
    near = salience[(bpms >= 0.98 * bpm) & (bpms <= 1.02 * bpm)]
    return float(near.max()) if len(near) else 0.0


def _beats_heard(env: np.ndarray, bpm: float, frame_rate: float) -> tuple[float, float, float]:
    """Of a pulse at ``bpm``: the share of its beats that carry an onset (over 0.3 of its strong beats' strength), how
    even alternate beats are (the weaker half's strength over the stronger's), and the half-beats' strength relative
    to the beats' (see :func:`beat_strengths`)."""
    beats, half_beats = beat_strengths(env, bpm, frame_rate)
    if len(beats) < 4:
        return 0.0, 1.0, half_beats
    heard = float(np.mean(beats > 0.3 * np.percentile(beats, 90)))
    return heard, groups_even(beats, 2), half_beats


def octave_pair(bpm: float) -> float:
    """The slower tempo of the octave pair that holds ``bpm`` or an octave of it: SLOW in OCTAVE_PAIR_BPM."""
    low, high = OCTAVE_PAIR_BPM
    slow = bpm
    while slow >= high:
        slow /= 2.0
    while slow < low:
        slow *= 2.0
    return slow


def octave_features(
    env: np.ndarray,
    bpms: np.ndarray,
    salience: np.ndarray,
    slow: float,
    bass: np.ndarray | None = None,
    frame_rate: float = ONSET_FRAME_RATE,
) -> np.ndarray:
    """The evidence that a beat at ``2 * slow`` rather than ``slow`` bpm is the music's (OCTAVE_FEATURES, in order):
    the log salience ratio of the two; where ``slow`` lies (octaves from 90 bpm: the prior); the share of the fast
    pulse's beats heard and of its eighth notes' (a beat that is really the eighth notes of a slower one is heard only
    where the melody moves in eighths, and then has no eighths of its own); how even the fast pulse's beats are; how
    strong the slow pulse's half-beats are; how even the slow pulse's beats are (with the bar's stress, a slow beat
    that is really every other beat of a fast one alternates less); and the same beats, evenness and half-beats of
    the bass envelope ``bass`` (the bass line and the kick mark the beat; without it, ``env`` stands in)."""
    fast = 2.0 * slow
    ratio = math.log((_salience_near(bpms, salience, fast) + 1e-3) / (_salience_near(bpms, salience, slow) + 1e-3))
    fast_heard, fast_even, _ = _beats_heard(env, fast, frame_rate)
    eighths_heard = _beats_heard(env, 2.0 * fast, frame_rate)[0]
    _, slow_even, slow_half_beats = _beats_heard(env, slow, frame_rate)
    bass = env if bass is None else bass
    bass_heard, bass_even, bass_half_beats = _beats_heard(bass, fast, frame_rate)
    _, bass_slow_even, bass_slow_half_beats = _beats_heard(bass, slow, frame_rate)
    position = math.log2(slow / 90.0)
    return np.array([ratio, position, fast_heard, eighths_heard, fast_even, slow_half_beats, slow_even, bass_heard,
                     bass_even, bass_half_beats, bass_slow_even, bass_slow_half_beats])  # fmt: skip


def fast_octave_probability(features: np.ndarray) -> float:
    """The probability (logistic regression, OCTAVE_WEIGHTS) that the fast tempo of the pair is the beat."""
    return float(1.0 / (1.0 + math.exp(-(OCTAVE_BIAS + float(np.dot(OCTAVE_WEIGHTS, features))))))


def metre_features(
    env: np.ndarray, bpms: np.ndarray, salience: np.ndarray, pulse: float, frame_rate: float = ONSET_FRAME_RATE
) -> np.ndarray:
    """The evidence that the beat is not in the pulse's octave family but x 3/2 or x 2/3 of it (METRE_FEATURES, in
    order): the log salience of 3/2, 2/3 and 3 times the pulse against the best tempo's; how even the double pulse's
    beats are in pairs; the envelope's autocorrelation at 3 and 6 pulse beats (a 3/4 bar, a 6/8 bar's two beats);
    the onsets at the pulse's quarter beats; how even the beats of a third of the pulse are in fours and those of
    half of it in threes (bars of 12 and 6 pulse beats); and the onsets at the thirds of the x 2/3 tempo's beats."""
    top = float(salience.max()) + 1e-3
    relative = [math.log((_salience_near(bpms, salience, pulse * f) + 1e-3) / top) for f in (1.5, 2.0 / 3.0, 3.0)]
    acf = autocorrelation(env)
    period = frame_rate * 60.0 / pulse
    lags = [beats * period for beats in (3, 6)]
    correlation = [float(np.interp(lag, np.arange(len(acf)), acf)) if lag < 0.7 * len(acf) else 0.0 for lag in lags]
    _, (first, third) = beat_profile(env, pulse, (0.25, 0.75), frame_rate)
    thirds = beat_profile(env, pulse * 2.0 / 3.0, (1.0 / 3.0, 2.0 / 3.0), frame_rate)[1]
    return np.array([*relative, groups_even(beat_profile(env, 2.0 * pulse, (), frame_rate)[0], 2), *correlation,
                     (first + third) / 2, groups_even(beat_profile(env, pulse / 3.0, (), frame_rate)[0], 4),
                     groups_even(beat_profile(env, pulse / 2.0, (), frame_rate)[0], 3),
                     sum(thirds) / 2])  # fmt: skip


def metre_probabilities(features: np.ndarray) -> np.ndarray:
    """The probability (multinomial logistic regression, METRE_WEIGHTS) of each family of METRE_FACTORS."""
    scores = np.concatenate([[0.0], np.asarray(METRE_BIAS) + np.asarray(METRE_WEIGHTS) @ features])
    scores = np.exp(scores - scores.max())
    return scores / scores.sum()


def find_pulse(
    env: np.ndarray, min_bpm: float = MIN_BPM, max_bpm: float = MAX_BPM, frame_rate: float = ONSET_FRAME_RATE
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float] | None:
    """The pulse of an onset envelope (see :func:`tempo_from_envelope`): ``(bpms, salience, weighted, pulse)``, the
    tempo grid, the salience and the salience times the prior on it, and the pulse; None without a pulse."""
    if len(env) < frame_rate or not np.any(env > 0):
        return None
    bpms = np.arange(min_bpm, max_bpm + 0.05, 0.1)
    salience = tempo_salience(env, bpms, frame_rate)
    weighted = salience * tempo_prior(bpms)
    best = int(np.argmax(weighted))
    if weighted[best] <= 0:
        return None
    pulse_bpm = float(bpms[best])
    if is_eighth_note_pulse(env, pulse_bpm, frame_rate):  # the double/half rule
        pulse_bpm = float(bpms[int(np.argmin(np.abs(bpms - pulse_bpm / 2)))])
    return bpms, salience, weighted, pulse_bpm


def tempo_candidates(
    env: np.ndarray,
    bpms: np.ndarray,
    salience: np.ndarray,
    pulse: float,
    bass: np.ndarray | None = None,
    frame_rate: float = ONSET_FRAME_RATE,
) -> list[tuple[float, float]]:
    """The six tempi that may be the beat of a pulse at ``pulse`` bpm, ``(bpm, probability)``, most probable first:
    each family of METRE_FACTORS (:func:`metre_probabilities`) times the octave in its pair
    (:func:`fast_octave_probability`; the probabilities sum to 1)."""
    family = metre_probabilities(metre_features(env, bpms, salience, pulse, frame_rate))
    candidates = []
    for factor, family_probability in zip(METRE_FACTORS, family, strict=True):
        slow = octave_pair(pulse * factor)
        fast = fast_octave_probability(octave_features(env, bpms, salience, slow, bass, frame_rate))
        candidates += [(2.0 * slow, family_probability * fast), (slow, family_probability * (1.0 - fast))]
    return sorted(candidates, key=lambda candidate: -candidate[1])


def tempo_from_envelope(
    env: np.ndarray,
    min_bpm: float = MIN_BPM,
    max_bpm: float = MAX_BPM,
    frame_rate: float = ONSET_FRAME_RATE,
    bass: np.ndarray | None = None,
) -> TempoEstimate | None:
    """The tempo of an onset envelope (see :func:`estimate_tempo`); ``bass``: the bass envelope
    (:func:`onset_envelopes`; without it, ``env`` stands in).

    **The pulse**: the tempo with the highest periodicity salience times the prior over tempi (:func:`tempo_prior`)
    wins, and a winner of at least HALVE_FROM_BPM whose beats alternate strong and weak with nothing between them is
    halved (:func:`is_eighth_note_pulse`).

    **The beat**: the pulse stays the tempo unless its probability among the candidates (:func:`tempo_candidates`:
    its octave pair and the pairs x 3/2 and x 2/3) is under TEMPO_SWITCH, when the most probable candidate is; where
    the tempo's probability is under TEMPO_SURE the next most probable is the ``alternative``.

    ``confidence`` (0 to 1) = rhythmic clarity (TEMPO_CLEAR_PULSE: 0 for noise and drones) x the probability of
    what a caption says: the tempo's, plus the alternative's where it is named. Below TEMPO_CONFIDENCE_THRESHOLD a
    caption should leave the tempo out.
    """
    found = find_pulse(env, min_bpm, max_bpm, frame_rate)
    if found is None:
        return None
    bpms, salience, weighted, pulse_bpm = found
    candidates = tempo_candidates(env, bpms, salience, pulse_bpm, bass, frame_rate)
    kept = [c for c in candidates if abs(c[0] / pulse_bpm - 1.0) < 0.01]
    bpm, probability = kept[0] if kept and kept[0][1] >= TEMPO_SWITCH else candidates[0]
    other, other_probability = max((c for c in candidates if c[0] != bpm), key=lambda c: c[1])
    in_doubt = probability < TEMPO_SURE
    best = int(np.argmin(np.abs(bpms - bpm)))
    rivals = [weighted[int(np.argmin(np.abs(bpms - bpm * f)))] for f in (0.5, 2.0) if min_bpm <= bpm * f <= max_bpm]
    rival = max(rivals) if rivals else 0.0
    ratio = float(weighted[best] / rival) if rival > 0 else math.inf
    period = frame_rate * 60.0 / bpm
    pulse = float(_pulse_autocorrelation(autocorrelation(env), np.array([period]))[0]) * math.sqrt(len(env) / period)
    low, high = TEMPO_CLEAR_PULSE
    clarity = float(np.clip((pulse - low) / (high - low), 0.0, 1.0))
    return TempoEstimate(
        bpm=round(bpm, 1),
        confidence=float(clarity * (probability + (other_probability if in_doubt else 0.0))),
        salience_ratio=ratio,
        alternative=round(other, 1) if in_doubt else None,
        probability=probability,
    )


def estimate_tempo(
    audio: np.ndarray, sr: int, min_bpm: float = MIN_BPM, max_bpm: float = MAX_BPM
) -> TempoEstimate | None:
    """Estimated tempo in beats per minute, or None when the audio has no rhythmic content (or is under 1 s).

    Args:
        audio: ``(samples,)`` or ``(channels, samples)`` float audio.
        sr: its sample rate.
        min_bpm, max_bpm: the range searched.
    """
    if np.shape(audio)[-1] < sr:  # under 1 s: shorter than the envelope's smoothing, which would not fit
        return None
    env, bass = onset_envelopes(audio, sr)
    return tempo_from_envelope(env, min_bpm, max_bpm, bass=bass)
