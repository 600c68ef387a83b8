"""Tempo of a piece of audio, with a confidence: an onset envelope, a periodicity salience over tempi, and a
documented rule for the double/half ambiguity.

* **Onset envelope** (:func:`onset_envelope`): spectral flux in 36 log-spaced bands, 100 frames per second.
* **Salience** (:func:`tempo_salience`): each candidate tempo is scored by the envelope's autocorrelation at one to
  four beat periods (favours the beat and its slower multiples) times its Fourier magnitude at the beat frequency
  and its harmonics (favours the beat and its faster multiples), so octave errors in either direction are penalised.
* **Double/half rule** (:func:`tempo_from_envelope`): see the function.
* **Octave decision** (:func:`octave_features`, :func:`fast_octave_probability`): the pulse and its double (or half)
  weighed by a logistic regression fitted on real music at every tempo; where the octave stays in doubt the estimate
  names the other one too (``alternative``), and a caption says both ("85 or 170 bpm").

Accuracy and cost on real music: bench/RESULTS.md ("Captions you can trust").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import maximum_filter1d

from .analysis import to_mono32

ONSET_FRAME_RATE = 100.0  # onset-envelope frames per second


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


def onset_envelope(audio: np.ndarray, sr: int) -> np.ndarray:
    """Spectral-flux onset strength at :data:`ONSET_FRAME_RATE` frames per second (1-D, >= 0).

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
    # remove the slowly varying part (loudness changes), keep the pulses
    width = int(ONSET_FRAME_RATE * 0.4) | 1
    local = np.convolve(flux, np.ones(width) / width, mode="same")
    return np.maximum(flux - local, 0.0)


# The octave in doubt: the pulse found is read as a pair of tempi an octave apart, SLOW and FAST = 2 x SLOW (SLOW
# below OCTAVE_PAIR_SPLIT_BPM, so the pair covers 50-200 bpm), and a logistic regression on the evidence for each
# (octave_features) gives the probability that FAST is the beat. Fitted by bench/tempo_octave_fit.py on the `tune`
# pieces only, rendered at tempi drawn per genre and uniformly over 50-200 bpm (bench/RESULTS.md "Captions at every
# tempo"). The prior's pulse stays the tempo unless its octave's probability is under OCTAVE_SWITCH; where the
# tempo's probability stays under TEMPO_OCTAVE_SURE the estimate names the other octave too (``alternative``) and a
# caption says both ("85 or 170 bpm"). Both chosen on the tune split only, by a rule (RESULTS.md): the single
# value at the genres' tempi within 1 point of before, two-valued captions at most a third, then the most captions
# right (at 0.3 the single value loses 1.3 points; at 0.8 35 % of captions name two tempi).
OCTAVE_PAIR_SPLIT_BPM = 100.0
OCTAVE_FEATURES = ("salience_fast_over_slow", "slow_octaves_from_90", "fast_beats_heard", "fast_eighths_heard",
                   "fast_beats_even", "slow_half_beats", "slow_beats_even")  # fmt: skip
OCTAVE_WEIGHTS = (1.293, -1.620, 4.172, 2.527, 1.020, 0.457, 4.046)
OCTAVE_BIAS = -8.945
OCTAVE_SWITCH = 0.2
TEMPO_OCTAVE_SURE = 0.75


@dataclass
class TempoEstimate:
    bpm: float
    confidence: float  # in [0, 1]: rhythmic clarity times the chosen octave's probability (see tempo_from_envelope)
    salience_ratio: float = math.inf  # the winner's salience over the best candidate a factor 2 away (> 1: clear)
    alternative: float | None = None  # the tempo an octave away, when the octave is in doubt (see TEMPO_OCTAVE_SURE)
    octave_probability: float = 1.0  # the probability that ``bpm``, not its double or half, is the beat


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


def beat_strengths(env: np.ndarray, bpm: float, frame_rate: float = ONSET_FRAME_RATE) -> tuple[np.ndarray, float]:
    """The onset strength at each beat of a pulse at ``bpm`` (phase chosen where the beats are strongest), and the
    mean strength half-way between beats relative to the beats' (0: nothing between them).

    The envelope is folded at the beat period (a comb filter; each beat reads the largest value within 30 ms, for
    timing that is not a sequencer's), so no beat tracker has to be compiled or run.
    """
    period = frame_rate * 60.0 / bpm
    peaks = maximum_filter1d(env, 7)  # 7 frames: +-30 ms
    count = int((len(env) - 1) // period)
    if count < 4:
        return np.zeros(0), 0.0
    positions = np.arange(count) * period  # (beats,)
    phases = np.arange(int(period))  # (phases,)
    strength = peaks[np.rint(phases[:, None] + positions[None, :]).astype(int).clip(0, len(env) - 1)]
    best = int(np.argmax(strength.mean(axis=1)))
    beats = strength[best]
    halves = peaks[np.rint(best + positions + period / 2).astype(int).clip(0, len(env) - 1)]
    return beats, float(halves.mean() / max(float(beats.mean()), 1e-12))


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
    even, odd = float(beats[0::2].mean()), float(beats[1::2].mean())
    heard = float(np.mean(beats > 0.3 * np.percentile(beats, 90)))
    return heard, min(even, odd) / max(even, odd, 1e-12), half_beats


def octave_features(
    env: np.ndarray, bpms: np.ndarray, salience: np.ndarray, slow: float, frame_rate: float = ONSET_FRAME_RATE
) -> np.ndarray:
    """The evidence that a beat at ``2 * slow`` rather than ``slow`` bpm is the music's (OCTAVE_FEATURES, in order):
    the log salience ratio of the two; where ``slow`` lies (octaves from 90 bpm: the prior); the share of the fast
    pulse's beats heard and of its eighth notes' (a beat that is really the eighth notes of a slower one is heard only
    where the melody moves in eighths, and then has no eighths of its own); how even the fast pulse's beats are; how
    strong the slow pulse's half-beats are; and how even the slow pulse's beats are (with the bar's stress, a slow
    beat that is really every other beat of a fast one alternates less)."""
    fast = 2.0 * slow
    ratio = math.log((_salience_near(bpms, salience, fast) + 1e-3) / (_salience_near(bpms, salience, slow) + 1e-3))
    fast_heard, fast_even, _ = _beats_heard(env, fast, frame_rate)
    eighths_heard = _beats_heard(env, 2.0 * fast, frame_rate)[0]
    _, slow_even, slow_half_beats = _beats_heard(env, slow, frame_rate)
    position = math.log2(slow / 90.0)
    return np.array([ratio, position, fast_heard, eighths_heard, fast_even, slow_half_beats, slow_even])


def fast_octave_probability(features: np.ndarray) -> float:
    """The probability (logistic regression, OCTAVE_WEIGHTS) that the fast tempo of the pair is the beat."""
    return float(1.0 / (1.0 + math.exp(-(OCTAVE_BIAS + float(np.dot(OCTAVE_WEIGHTS, features))))))


def pulse_octaves(
    env: np.ndarray, min_bpm: float = MIN_BPM, max_bpm: float = MAX_BPM, frame_rate: float = ONSET_FRAME_RATE
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float] | None:
    """The pulse of an onset envelope and the slower tempo of its octave pair (see :func:`tempo_from_envelope`):
    ``(bpms, salience, weighted, slow, pulse)``, the tempo grid, the salience and the salience times the prior on
    it; None without a pulse."""
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
    slow = pulse_bpm if pulse_bpm < OCTAVE_PAIR_SPLIT_BPM else pulse_bpm / 2
    return bpms, salience, weighted, slow, pulse_bpm


def tempo_from_envelope(
    env: np.ndarray, min_bpm: float = MIN_BPM, max_bpm: float = MAX_BPM, frame_rate: float = ONSET_FRAME_RATE
) -> TempoEstimate | None:
    """The tempo of an onset envelope (see :func:`estimate_tempo`).

    **The pulse**: the tempo with the highest periodicity salience times the prior over tempi (:func:`tempo_prior`)
    wins, and a winner of at least HALVE_FROM_BPM whose beats alternate strong and weak with nothing between them is
    halved (:func:`is_eighth_note_pulse`).

    **Its octave**: the pulse is read as a pair, SLOW and FAST = 2 x SLOW (SLOW under OCTAVE_PAIR_SPLIT_BPM); the
    pulse stays the tempo unless its probability (:func:`fast_octave_probability` of :func:`octave_features`) is
    under OCTAVE_SWITCH, and where the tempo's probability is under TEMPO_OCTAVE_SURE the other is the
    ``alternative``.

    ``confidence`` (0 to 1) = rhythmic clarity (TEMPO_CLEAR_PULSE: 0 for noise and drones) x the chosen octave's
    probability. Below TEMPO_CONFIDENCE_THRESHOLD a caption should leave it out.
    """
    pair = pulse_octaves(env, min_bpm, max_bpm, frame_rate)
    if pair is None:
        return None
    bpms, salience, weighted, slow, pulse_bpm = pair
    fast_probability = fast_octave_probability(octave_features(env, bpms, salience, slow, frame_rate))
    bpm, other = (2 * slow, slow) if pulse_bpm != slow else (slow, 2 * slow)
    octave_probability = fast_probability if pulse_bpm != slow else 1.0 - fast_probability
    if octave_probability < OCTAVE_SWITCH:  # the evidence for the other octave outweighs the prior's choice
        bpm, other, octave_probability = other, bpm, 1.0 - octave_probability
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
        confidence=float(clarity * octave_probability),
        salience_ratio=ratio,
        alternative=round(other, 1) if octave_probability < TEMPO_OCTAVE_SURE else None,
        octave_probability=octave_probability,
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
    return tempo_from_envelope(onset_envelope(audio, sr), min_bpm, max_bpm)
