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

The interval is the expanded percentile interval of the replicates' differences (:class:`Interval`);
``other_side_of_zero`` is the share of replicates on the other side of zero from the observed difference (1.0 when the
difference is exactly zero: no evidence of a change in either direction).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.stats

DEFAULT_RESAMPLES = 2000  # percentile intervals: 2000 resamples put about 50 replicates beyond each end
DEFAULT_BOOTSTRAP_SEED = 0
# Fewer independent units than this and no change is called: with all n differences of one sign (chance
# 2^(1-n) when nothing changed: 0.8 % at 8) every bootstrap replicate has that sign.
MIN_UNITS = 8


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
    """A difference (adapter - base) with its bootstrap interval over ``units`` independent units (clip pairs,
    prompts, windows).

    The interval is Hesterberg's *expanded* percentile interval ("What Teachers Should Know About the Bootstrap",
    The American Statistician 69(4), 2015): the percentiles at ``Φ(±sqrt(n / (n - 1)) t_{n-1, 0.975})``
    instead of 2.5 % and 97.5 %, which corrects the plain percentile interval's too-narrow coverage with few units. A
    bootstrap over fewer than :data:`MIN_UNITS` units cannot hold its 95 % whatever the correction (with all unit
    differences of one sign, which happens by chance with probability 2^(1-n), every replicate has that sign), so it
    never calls a change there.
    """

    delta: float
    low: float
    high: float
    other_side_of_zero: float
    resamples: int
    units: int

    @classmethod
    def of(cls, delta: float, replicates: np.ndarray, units: int) -> Interval:
        replicates = np.asarray(replicates, dtype=np.float64)
        replicates = replicates[np.isfinite(replicates)]
        if not len(replicates) or units < 2:
            return cls(delta, float("nan"), float("nan"), float("nan"), len(replicates), units)
        tail = 100 * scipy.stats.norm.cdf(-math.sqrt(units / (units - 1)) * scipy.stats.t.ppf(0.975, units - 1))
        low, high = np.percentile(replicates, [tail, 100 - tail])
        if delta > 0:
            other = float(np.mean(replicates <= 0))
        elif delta < 0:
            other = float(np.mean(replicates >= 0))
        else:
            other = 1.0
        return cls(float(delta), float(low), float(high), other, len(replicates), units)

    @property
    def enough_units(self) -> bool:
        return self.units >= MIN_UNITS

    def excludes_zero(self) -> bool:
        return bool(self.enough_units and (self.low > 0 or self.high < 0))


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
