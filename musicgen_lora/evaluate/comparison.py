"""Each adapter against the base model: the difference of every metric with a paired bootstrap interval
(:mod:`.bootstrap`), and a verdict in words.

``metrics.json["comparison"][<model>]`` is ``{"verdict": "<one sentence>", "metrics": {<metric>: {"label", "delta",
"ci95": [low, high], "other_side_of_zero", "base", "model", "changed", ...}}, "without_interval": [...],
"bootstrap": {...}}``. A metric counts as *changed* when its 95 % interval excludes zero and the difference is at
least the metric's resolution (the smallest change worth a word: 1e-4 nats of cross-entropy, 0.1 LU of loudness,
0.1 % of a Fréchet distance...), so float round-off never reads as a change, and when at least 8 independent units
(clip pairs, prompts, windows) were resampled (:data:`~.bootstrap.MIN_UNITS`). The verdict names every changed
headline metric with its direction, interval and words, counts the other changed metrics, and lists the unchanged
headline metrics with their intervals; "no detectable change" when no metric changed. No metric is left out of the
comparison for the way it moved; the model-level summaries that have no per-clip value (a maximum over clips, a
count) are listed under ``without_interval`` with their per-clip counterpart instead of an interval they do not have.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .bootstrap import MIN_UNITS, ClipResamples, Interval, paired_mean, paired_ratio, window_resamples
from .frechet import ClipStats, Gaussian, fad_infinity

FRECHET_RESAMPLES = 500  # at most: each replicate is one eigendecomposition of a dim x dim matrix per model
FAD_INF_RESAMPLES = 100  # at most: each replicate fits FAD∞ on 10 subset sizes
UNIT_NAMES = {"per clip (prompts x samples)": "clip pairs", "per prompt": "prompts", "per evaluation window": "windows",
              "clips resampled": "clips"}  # fmt: skip
EMBEDDING_NAMES = {
    "clap": "CLAP embeddings",
    "encodec_latent": "EnCodec latents",
    "descriptor": "MFCC+chroma",
}


@dataclass(frozen=True)
class Metric:
    """How a compared metric is named, which way is better, and how the verdict words a change.

    Attributes:
        resolution: the smallest difference that counts as a change (relative to the base value when ``relative``).
        up, down: the verdict's words for a rise and a fall ("closer to the training music", ...).
    """

    label: str
    better: str | None
    resolution: float
    up: str
    down: str
    headline: bool = False
    relative: bool = False  # a distance: the change is also given in % of the base value
    unit: str = ""


# per-clip values in comparison_results.jsonl
CLIP_METRICS: dict[str, Metric] = {
    "clap_score": Metric("caption adherence (CLAP score)", "higher", 0.005, "follows its captions more closely",
                         "follows its captions less closely", headline=True),
    "tempo_within_4pct": Metric("tempo within 4 % of the prompt's", "higher", 0.01,
                                "keeps the prompt's tempo more often", "keeps the prompt's tempo less often",
                                headline=True),
    "tempo_rel_error": Metric("relative tempo error", "lower", 0.005, "misses the prompt's tempo by more",
                              "misses the prompt's tempo by less"),
    "key_score": Metric("key score against the prompt's key", "higher", 0.01, "keeps the prompt's key better",
                        "keeps the prompt's key less well", headline=True),
    "loudness_lufs": Metric("loudness", None, 0.1, "louder", "quieter", headline=True, unit=" LU"),
    "silent_fraction": Metric("silent share", "lower", 0.001, "more silence", "less silence"),
    "clipping_fraction": Metric("clipped samples", "lower", 1e-5, "clips more", "clips less"),
    "duration_ratio": Metric("duration / requested", None, 0.001, "longer clips", "shorter clips"),
    "per_song_fad": Metric("per-song FAD to the training files (EnCodec code latents)", None, 0.001,
                           "further from the training music", "closer to the training music", headline=True,
                           relative=True),
    "copy_score": Metric("copy score", "lower", 0.01, "copies more of the training music",
                         "copies less of the training music", headline=True),
    "melody_similarity": Metric("melody similarity to the training music", "lower", 0.01,
                                "closer to the training melodies", "further from the training melodies"),
    "copied_run_seconds": Metric("longest verbatim run from the training music", "lower", 0.02,
                                 "longer verbatim runs from the training music",
                                 "shorter verbatim runs from the training music", unit=" s"),
}  # fmt: skip
DIVERSITY = Metric("spread between the samples of a prompt", None, 0.005, "more varied between samples",
                   "less varied between samples", headline=True, relative=True)  # fmt: skip
# model-level summaries of metrics.json with no per-clip value, and what carries their interval instead
WITHOUT_INTERVAL = {
    "memorisation.copy_score": "the maximum over clips; per-clip copy_score has the interval",
    "memorisation.copies": "a count of clips at the threshold; per-clip copy_score has the interval",
    "memorisation.longest_copied_run_seconds": "the maximum over clips; per-clip copied_run_seconds has the interval",
    "health.duration_ratio_min": "the minimum over clips; per-clip duration_ratio has the interval",
    "health.files_with_nonfinite_samples": "a count of clips; a clip with NaN/Inf samples is written as silence",
}


def _cross_entropy_metric(dataset: str, codebook: int | None) -> Metric:
    name = "cross-entropy" if codebook is None else f"cross-entropy of codebook {codebook}"
    return Metric(f"{name} on '{dataset}'", "lower", 1e-4, f"predicts the '{dataset}' music worse",
                  f"predicts the '{dataset}' music better", headline=codebook is None, unit=" nats")  # fmt: skip


def _frechet_metric(dataset: str, embedding: str, headline: bool, infinity: bool = False) -> Metric:
    name = "FAD∞" if infinity else "Fréchet distance"
    return Metric(f"{name} to '{dataset}' ({EMBEDDING_NAMES.get(embedding, embedding)})", "lower", 0.001,
                  f"further from the '{dataset}' music", f"closer to the '{dataset}' music", headline=headline,
                  relative=True)  # fmt: skip


@dataclass
class Evidence:
    """What the comparison needs of one model.

    Attributes:
        records: one per clip, prompt-major (every model has the same prompts x samples grid).
        windows: per evaluation dataset, the per-window cross-entropy sums and target counts, each (windows, K).
        diversity: per prompt, the spread of its samples (None for a single sample).
        clip_stats: per embedding, the clips' statistics for the Fréchet distances (against every dataset).
    """

    records: list[dict[str, Any]]
    windows: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    diversity: list[float | None] = field(default_factory=list)
    clip_stats: dict[str, ClipStats] = field(default_factory=dict)


class Comparison:
    """Compares each model with the base on one set of resamples (see :mod:`.bootstrap`).

    Args:
        base: the base model's evidence.
        references: per evaluation dataset and embedding, the reference Gaussian of the Fréchet distances.
        prompts, samples: the grid of clips.
        resamples, seed: the bootstrap's.
    """

    def __init__(self, base: Evidence, references: dict[str, dict[str, Gaussian]], prompts: int, samples: int,
                 resamples: int, seed: int) -> None:  # fmt: skip
        self.base, self.references = base, references
        self.resamples, self.seed = resamples, seed
        self.clips = ClipResamples.draw(prompts, samples, resamples, seed)
        self.windows = {name: window_resamples(len(sums), resamples, seed) for name, (sums, _) in base.windows.items()}
        self._base_frechet: dict[tuple[str, str, str], np.ndarray] = {}  # the base's replicates, shared by adapters

    def compare(self, other: Evidence) -> dict[str, Any]:
        """The comparison block of one model (see the module docstring)."""
        metrics: dict[str, dict[str, Any]] = {}
        without = [{"metric": k, "why": why} for k, why in WITHOUT_INTERVAL.items()]
        for dataset in self.base.windows:
            self._cross_entropy(dataset, other, metrics)
        for dataset, embeddings in self.references.items():
            headline = "clap" if "clap" in embeddings else "encodec_latent"
            for embedding in embeddings:
                self._frechet(dataset, embedding, embedding == headline, other, metrics)
        for key, metric in CLIP_METRICS.items():
            base_values, other_values = _clip_values(self.base.records, key), _clip_values(other.records, key)
            if not any(key in r for r in self.base.records + other.records):
                continue  # not measured in this evaluation (no CLAP, no training data, no tempo in the prompts)
            b, o, d, replicates, base_replicates, pairs = paired_mean(base_values, other_values, self.clips.clip_counts)
            if pairs == 0:
                without.append({"metric": key, "why": "no clip has a value for both models (e.g. no tempo found in "
                                "either clip), so there is nothing to pair"})  # fmt: skip
                continue
            metrics[key] = _entry(metric, b, o, d, replicates, "per clip (prompts x samples)", pairs,
                                  base_replicates)  # fmt: skip
        if any(v is not None for v in self.base.diversity):
            base_values, other_values = _as_array(self.base.diversity), _as_array(other.diversity)
            b, o, d, replicates, base_replicates, pairs = paired_mean(
                base_values, other_values, self.clips.prompt_counts
            )
            metrics["diversity"] = _entry(DIVERSITY, b, o, d, replicates, "per prompt", pairs, base_replicates)
        return {
            "verdict": verdict(metrics),
            "metrics": metrics,
            "without_interval": without,
            "bootstrap": {
                "resamples": self.resamples,
                "seed": self.seed,
                "clips": "the prompts x samples clip pairs drawn with replacement, the same resamples for the base "
                "model and this one (paired); the prompts are those given (per-prompt metrics: prompts drawn)",
                "windows": "evaluation windows with replacement (cross-entropy: summed loss / summed targets)",
                "interval": "expanded percentile interval of the resampled differences (Hesterberg 2015: the "
                "percentiles at Phi(-+sqrt(n/(n-1)) t_(n-1, 0.975)) for n units); no change is called with fewer than "
                f"{MIN_UNITS} units",
                "frechet_resamples": min(self.resamples, FRECHET_RESAMPLES),
                "fad_inf_resamples": min(self.resamples, FAD_INF_RESAMPLES),
            },
        }

    def _cross_entropy(self, dataset: str, other: Evidence, metrics: dict[str, dict[str, Any]]) -> None:
        (base_sums, base_counts), (sums, counts) = self.base.windows[dataset], other.windows[dataset]
        if sums.shape != base_sums.shape:
            return  # another codebook layout (a full model of another size): nothing to pair
        weights = self.windows[dataset]
        parts = [(None, base_sums.sum(1), sums.sum(1), base_counts.sum(1), counts.sum(1))]
        parts += [(k + 1, base_sums[:, k], sums[:, k], base_counts[:, k], counts[:, k]) for k in range(sums.shape[1])]
        for codebook, bs, os_, bc, oc in parts:
            b, o, d, replicates, base_replicates = paired_ratio((bs, os_), (bc, oc), weights)
            key = f"cross_entropy[{dataset}]" if codebook is None else f"ce_q{codebook}[{dataset}]"
            metrics[key] = _entry(_cross_entropy_metric(dataset, codebook), b, o, d, replicates,
                                  "per evaluation window", len(bs), base_replicates)  # fmt: skip

    def _frechet(self, dataset: str, embedding: str, headline: bool, other: Evidence,
                 metrics: dict[str, dict[str, Any]]) -> None:  # fmt: skip
        reference = self.references[dataset][embedding]
        base_stats, stats = self.base.clip_stats[embedding], other.clip_stats[embedding]
        clips = len(base_stats.counts)
        if clips < 2 or len(stats.counts) != clips:
            return
        everything = np.ones((1, clips))
        weights = self.clips.clip_counts[: min(self.resamples, FRECHET_RESAMPLES)]
        b = float(base_stats.distances(reference, everything)[0])
        o = float(stats.distances(reference, everything)[0])
        base_replicates = self._cached((dataset, embedding, "fd"), lambda: base_stats.distances(reference, weights))
        replicates = stats.distances(reference, weights) - base_replicates
        metrics[f"frechet_{embedding}[{dataset}]"] = _entry(
            _frechet_metric(dataset, embedding, headline), b, o, o - b, replicates, "clips resampled", pairs=clips,
            base_replicates=base_replicates,
        )  # fmt: skip
        pools = _pools(self.clips.clip_counts[: min(self.resamples, FAD_INF_RESAMPLES)])
        b_inf = float(fad_infinity(base_stats, reference)["values"][0])
        o_inf = float(fad_infinity(stats, reference)["values"][0])
        base_inf = self._cached(
            (dataset, embedding, "inf"), lambda: fad_infinity(base_stats, reference, pools)["values"]
        )
        replicates = fad_infinity(stats, reference, pools)["values"] - base_inf
        metrics[f"fad_inf_{embedding}[{dataset}]"] = _entry(
            _frechet_metric(dataset, embedding, False, infinity=True), b_inf, o_inf, o_inf - b_inf, replicates,
            "clips resampled", pairs=clips, base_replicates=base_inf,
        )  # fmt: skip

    def _cached(self, key: tuple[str, str, str], compute: Callable[[], np.ndarray]) -> np.ndarray:
        if key not in self._base_frechet:
            self._base_frechet[key] = compute()
        return self._base_frechet[key]


def _pools(counts: np.ndarray) -> np.ndarray:
    """(r, clips) bootstrap counts -> (r, size) clip indices (each resample's multiset of clips)."""
    return np.stack([np.repeat(np.arange(counts.shape[1]), row.astype(int)) for row in counts])


def _clip_values(records: list[dict[str, Any]], key: str) -> np.ndarray:
    return _as_array([record.get(key) for record in records])


def _as_array(values: list[Any]) -> np.ndarray:
    return np.array(
        [float(v) if isinstance(v, (int, float)) and v is not None else np.nan for v in values], dtype=np.float64
    )


def _entry(metric: Metric, base: float, model: float, delta: float, replicates: np.ndarray, unit: str,
           pairs: int, base_replicates: np.ndarray) -> dict[str, Any]:  # fmt: skip
    """One metric's comparison entry (see the module docstring)."""
    interval = Interval.of(delta, replicates, pairs)
    entry: dict[str, Any] = {
        "label": metric.label,
        "base": base,
        "model": model,
        "delta": delta,
        "ci95": [interval.low, interval.high],
        "other_side_of_zero": interval.other_side_of_zero,
        "better": metric.better,
        "resampled": unit,
        "pairs": pairs,  # independent units resampled: clip pairs, prompts or windows
        "resamples": interval.resamples,
        "resolution": metric.resolution,
        "headline": metric.headline,
    }
    size = abs(delta)
    if metric.relative and np.isfinite(base) and base > 0 and base_replicates is not None:
        # each replicate relative to its own resampled base value, so a distance never falls by more than 100 %
        with np.errstate(invalid="ignore", divide="ignore"):
            own_base = np.where(base_replicates > 0, base_replicates, np.nan)
            relative = Interval.of(delta / base, np.asarray(replicates) / own_base, pairs)
        entry.update(relative=relative.delta, relative_ci95=[relative.low, relative.high])
        size = abs(delta / base)
    entry["changed"] = bool(interval.excludes_zero() and size >= metric.resolution)
    if not interval.enough_units:
        units = UNIT_NAMES.get(unit, "units")
        entry["too_few"] = f"{pairs} {units} resampled; at least {MIN_UNITS} are needed to call a change"
    entry["direction"] = ("higher" if delta > 0 else "lower") if entry["changed"] else None
    if entry["changed"] and metric.better:
        entry["verdict"] = "better" if entry["direction"] == metric.better else "worse"
    entry["words"] = (metric.up if delta > 0 else metric.down) if entry["changed"] else "unchanged"
    entry["unit"] = metric.unit
    return entry


def _signed(value: float | None, decimals: int) -> str:
    if value is None or not math.isfinite(value):  # no interval (one unit), or JSON's null for it
        return "n/a"
    if round(value, decimals) == 0:
        return f"{0:.{decimals}f}"  # no sign on a difference that rounds to nothing
    return f"{value:+.{decimals}f}".replace("-", "−")


def describe(entry: dict[str, Any]) -> str:
    """``label +x [low, high]``: in % of the base value for a distance, else with as many decimals as the metric's
    resolution has."""
    if "relative" in entry:
        low, high, value = (None if v is None else 100 * v for v in (*entry["relative_ci95"], entry["relative"]))
        return f"{entry['label']} {_signed(value, 0)} % [{_signed(low, 0)} %, {_signed(high, 0)} %]"
    decimals = max(0, -math.floor(math.log10(entry["resolution"])))
    low, high = (_signed(v, decimals) for v in entry["ci95"])
    return f"{entry['label']} {_signed(entry['delta'], decimals)} [{low}, {high}]{entry.get('unit', '')}"


def verdict(metrics: dict[str, dict[str, Any]]) -> str:
    """One sentence: the changed headline metrics with their direction and interval, how many other metrics
    changed, and the unchanged headline metrics; "no detectable change" when nothing changed."""
    changed = [e for e in metrics.values() if e["changed"]]
    if not changed:
        few = [key for key, e in metrics.items() if "too_few" in e]
        note = f"; {len(few)} of them on too few clips, prompts or windows to call a change ({', '.join(few)})"
        return f"no detectable change in any of the {len(metrics)} metrics compared" + (note if few else "")
    headline = [e for e in changed if e["headline"]]
    parts = [f"{e['words']}: {describe(e)}" for e in headline]
    others = [key for key, e in metrics.items() if e["changed"] and not e["headline"]]
    if others:
        parts.append(f"{len(others)} other metric{'s' if len(others) > 1 else ''} changed ({', '.join(others)})")
    steady = [
        describe(e) + (f" (only {e['too_few'].split(' resampled')[0]}: too few to call)" if "too_few" in e else "")
        for e in metrics.values()
        if e["headline"] and not e["changed"]
    ]
    if steady:
        parts.append("unchanged: " + ", ".join(steady))
    return "; ".join(parts)
