"""Paired bootstrap intervals for the difference between an adapter and the base model.

Every model renders the same prompts with the same seeds, so clip ``(prompt p, sample s)`` of an adapter and of the
base differ only by the weights: the comparison is *paired* (the paired bootstrap of Koehn 2004, over test items).
One set of resamples serves every metric and every model (the same resampled clips for the base and the adapter,
and for all metrics, so that the intervals are comparable):

- **clips** (prompts x seeds): the prompts x samples clip pairs drawn with replacement. A per-clip metric's
  replicate is the mean of its resampled per-clip differences (pairs with a value on both sides only); a
  distribution-level metric (a Fréchet distance) is recomputed on each model's resampled clips, against the fixed
  reference, and differenced. The prompts are those given: the interval says whether the adapter changed the music
  *on these prompts* beyond what the sampling seed changes (a two-stage resampling of the prompts themselves would
  need many prompts; with the 2-4 sample prompts of a run it is degenerate).
- **prompts** (a per-prompt metric: the diversity of a prompt's samples): the prompts drawn with replacement.
- **windows** (held-out cross-entropy): the evaluation windows drawn with replacement; a replicate is the ratio of the
  summed cross-entropy to the summed targets, as the point value is.

The interval is the 2.5th-97.5th percentile of the replicates' differences (percentile bootstrap);
``other_side_of_zero`` is the share of replicates on the other side of zero from the observed difference (1.0 when the
difference is exactly zero: no evidence of a change in either direction).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_RESAMPLES = 2000  # percentile intervals: 2000 resamples put 50 replicates beyond each end
DEFAULT_BOOTSTRAP_SEED = 0


@dataclass(frozen=True)
class ClipResamples:
    """Bootstrap counts over a prompts x samples grid of clips.

    Attributes:
        prompt_counts: (resamples, prompts) how often each prompt was drawn (per-prompt metrics).
        clip_counts: (resamples, prompts * samples) how often each clip pair was drawn (prompt-major order).
    """

    prompt_counts: np.ndarray
    clip_counts: np.ndarray

    @classmethod
    def draw(cls, prompts: int, samples: int, resamples: int, seed: int) -> ClipResamples:
        rng = np.random.default_rng(seed)
        return cls(_counts(rng, prompts, resamples), _counts(rng, prompts * samples, resamples))

    @property
    def resamples(self) -> int:
        return len(self.clip_counts)


def _counts(rng: np.random.Generator, units: int, resamples: int) -> np.ndarray:
    """(resamples, units): how often each unit is drawn in each of ``resamples`` draws of ``units`` with
    replacement."""
    counts = np.zeros((resamples, units))
    np.add.at(counts, (np.arange(resamples)[:, None], rng.integers(0, units, size=(resamples, units))), 1.0)
    return counts


def window_resamples(windows: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, windows) bootstrap counts of evaluation windows."""
    return _counts(np.random.default_rng(seed), windows, resamples)


@dataclass(frozen=True)
class Interval:
    """A difference (adapter - base) with its percentile bootstrap interval."""

    delta: float
    low: float
    high: float
    other_side_of_zero: float
    resamples: int

    @classmethod
    def of(cls, delta: float, replicates: np.ndarray) -> Interval:
        replicates = np.asarray(replicates, dtype=np.float64)
        replicates = replicates[np.isfinite(replicates)]
        if not len(replicates):
            return cls(delta, float("nan"), float("nan"), float("nan"), 0)
        low, high = np.percentile(replicates, [2.5, 97.5])
        if delta > 0:
            other = float(np.mean(replicates <= 0))
        elif delta < 0:
            other = float(np.mean(replicates >= 0))
        else:
            other = 1.0
        return cls(float(delta), float(low), float(high), other, len(replicates))

    def excludes_zero(self) -> bool:
        return bool(self.low > 0 or self.high < 0)


def paired_ratio(
    numerator: tuple[np.ndarray, np.ndarray], denominator: tuple[np.ndarray, np.ndarray], counts: np.ndarray
) -> tuple[float, float, float, np.ndarray]:
    """The difference of two ratio estimators ``sum(num) / sum(den)`` over paired units, and its replicates.

    Args:
        numerator, denominator: (base, other) per-unit values, each (units,); NaN marks a unit without a value on
            that side, and such a unit is left out on both sides (pairs only).
        counts: (resamples, units) bootstrap counts.

    Returns:
        ``(base_value, other_value, delta, replicate_deltas, base_replicates)``.
    """
    nb, no = (np.asarray(a, np.float64) for a in numerator)
    db, do = (np.asarray(a, np.float64) for a in denominator)
    paired = np.isfinite(nb) & np.isfinite(no) & np.isfinite(db) & np.isfinite(do)
    nb, no, db, do = (np.where(paired, a, 0.0) for a in (nb, no, db, do))
    base, other = _ratio(nb.sum(), db.sum()), _ratio(no.sum(), do.sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        base_replicates = counts @ nb / (counts @ db)
        replicates = counts @ no / (counts @ do) - base_replicates
    return base, other, other - base, replicates, base_replicates


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator > 0 else float("nan")


def paired_mean(
    base: np.ndarray, other: np.ndarray, counts: np.ndarray
) -> tuple[float, float, float, np.ndarray, np.ndarray, int]:
    """The difference of the means of paired per-unit values (NaN: no value, the pair is left out), its replicates,
    the base's replicates, and how many pairs had a value on both sides."""
    base, other = np.asarray(base, np.float64), np.asarray(other, np.float64)
    ones = np.where(np.isfinite(base) & np.isfinite(other), 1.0, np.nan)
    return (*paired_ratio((base, other), (ones, ones), counts), int(np.isfinite(ones).sum()))
