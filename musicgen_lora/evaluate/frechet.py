"""Fréchet distances between sets of embeddings: the distance itself, per-clip statistics that let a set of clips
be resampled without touching the frames again, FAD∞, and per-song FAD.

- **Fréchet distance** (FAD when the embeddings are audio embeddings): ``|mu1 - mu2|^2 + tr(S1) + tr(S2) -
  2 tr((S1^1/2 S2 S1^1/2)^1/2)`` between Gaussians fitted to two sets of vectors, in float64.
- **Per-clip statistics** (:class:`ClipStats`): each clip's frame count, frame sum and sum of outer products, so the
  Gaussian of any multiset of clips (a bootstrap resample, a random subset) is a weighted sum.
- **FAD∞** (:func:`fad_infinity`): the Fréchet distance is biased upwards with few samples, the bias about linear in
  1/N (Chong & Forsyth, "Effectively Unbiased FID and Inception Score and where to find them", CVPR 2020). FAD∞
  computes the distance on random subsets of growing size and takes the intercept of a straight line fitted against
  1/N, as Gui et al. did for audio ("Adapting Fréchet Audio Distance for Generative Music Evaluation", ICASSP 2024,
  microsoft/fadtk). Here the subsets are of whole clips, drawn without replacement as Chong & Forsyth draw them
  (fadtk draws frames with replacement, which converges to the distance of the clips at hand, bias included), and
  N counts their frames.
- **Per-song FAD** (:func:`per_clip_distances`): each clip's own frames against a reference set, also from Gui et al.:
  one number per clip, so it can be compared clip by clip.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

FAD_INF_STEPS = 10  # subset sizes from a fifth of the clips to all of them
FAD_INF_SEED = 0


def frechet_distance(x: np.ndarray, y: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two sets of vectors, (n, dim) and (m, dim), in float64."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"need two (n, dim) arrays with the same dim, got {x.shape} and {y.shape}")
    if len(x) < 2 or len(y) < 2:
        raise ValueError("need at least two vectors in each set")
    return frechet_distance_from_stats(x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance_from_stats(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """``|mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1^1/2 S2 S1^1/2)^1/2)``.

    The trace term uses only symmetric eigendecompositions (``S1^1/2`` and the eigenvalues of the symmetric
    ``S1^1/2 S2 S1^1/2``, negative round-off clipped to 0) instead of ``sqrtm(S1 S2)`` of a non-symmetric product,
    whose complex round-off the usual FID code has to discard; the result is never negative.
    """
    sigma1 = np.atleast_2d(np.asarray(sigma1, np.float64))
    return Gaussian(np.atleast_1d(np.asarray(mu1, np.float64)), sigma1).distance(mu2, sigma2)


class Gaussian:
    """A fixed Gaussian (mean, covariance) with its covariance's square root, for many distances against it."""

    def __init__(self, mu: np.ndarray, sigma: np.ndarray) -> None:
        self.mu, self.sigma = np.asarray(mu, np.float64), np.asarray(sigma, np.float64)
        self.root = _psd_sqrt(self.sigma)
        self.trace = float(np.trace(self.sigma))

    def distance(self, mu: np.ndarray, sigma: np.ndarray) -> float:
        return float(self.distances(np.asarray(mu, np.float64)[None], np.atleast_2d(sigma)[None])[0])

    def distances(self, mus: np.ndarray, sigmas: np.ndarray) -> np.ndarray:
        """The distance of each of (n, dim) means and (n, dim, dim) covariances to this Gaussian."""
        middle = self.root @ sigmas @ self.root
        eigenvalues = np.linalg.eigvalsh((middle + np.swapaxes(middle, -1, -2)) / 2)
        trace_sqrt = np.sqrt(np.clip(eigenvalues, 0.0, None)).sum(axis=-1)
        traces = np.trace(sigmas, axis1=-2, axis2=-1)
        values = ((mus - self.mu) ** 2).sum(axis=-1) + traces + self.trace - 2.0 * trace_sqrt
        return np.maximum(values, 0.0)


@dataclass
class ClipStats:
    """Each clip's frame count (n,), frame sum (n, dim) and sum of outer products (n, dim, dim), float64."""

    counts: np.ndarray
    sums: np.ndarray
    outers: np.ndarray

    @classmethod
    def of(cls, clips: list[np.ndarray]) -> ClipStats:
        """From each clip's (frames, dim) embeddings."""
        frames = [np.asarray(c, np.float64) for c in clips]
        return cls(
            np.array([len(f) for f in frames], np.float64),
            np.stack([f.sum(axis=0) for f in frames]),
            np.stack([f.T @ f for f in frames]),
        )

    @property
    def dim(self) -> int:
        return int(self.sums.shape[1])

    @property
    def frames(self) -> int:
        return int(self.counts.sum())

    def gaussians(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Means (r, dim), unbiased covariances (r, dim, dim) and frame counts (r,) of ``weights`` (r, clips): how
        often each clip is taken in each of r multisets."""
        n = weights @ self.counts
        mus = (weights @ self.sums) / n[:, None]
        seconds = np.tensordot(weights, self.outers, axes=(1, 0))  # (r, dim, dim)
        sigmas = (seconds - n[:, None, None] * mus[:, :, None] * mus[:, None, :]) / (n - 1)[:, None, None]
        return mus, sigmas, n

    def gaussian(self) -> Gaussian:
        mus, sigmas, _ = self.gaussians(np.ones((1, len(self.counts))))
        return Gaussian(mus[0], sigmas[0])

    def distances(self, reference: Gaussian, weights: np.ndarray, chunk: int = 0) -> np.ndarray:
        """The distance to ``reference`` of each multiset of clips in ``weights`` (r, clips), in chunks that keep
        the (chunk, dim, dim) covariances under about 64 MB."""
        chunk = chunk or max(1, (64 << 20) // (8 * self.dim * self.dim))
        out = [reference.distances(*self.gaussians(weights[i : i + chunk])[:2]) for i in range(0, len(weights), chunk)]
        return np.concatenate(out) if out else np.zeros(0)


class RunningGaussian:
    """A Gaussian fitted to frames added a clip at a time (the reference of per-song FAD: the training files)."""

    def __init__(self) -> None:
        self.n, self.total, self.outer = 0, 0.0, 0.0

    def add(self, frames: np.ndarray) -> None:
        frames = np.asarray(frames, np.float64)
        self.n += len(frames)
        self.total = self.total + frames.sum(axis=0)
        self.outer = self.outer + frames.T @ frames

    def gaussian(self) -> Gaussian | None:
        if self.n < 2:
            return None
        mu = self.total / self.n
        return Gaussian(mu, (self.outer - self.n * np.outer(mu, mu)) / (self.n - 1))


def per_clip_distances(stats: ClipStats, reference: Gaussian) -> np.ndarray:
    """Each clip's own Fréchet distance to ``reference`` (per-song FAD), (clips,); NaN for a clip of one frame."""
    weights = np.eye(len(stats.counts))
    values = np.full(len(stats.counts), np.nan)
    usable = stats.counts >= 2
    if usable.any():
        values[usable] = stats.distances(reference, weights[usable])
    return values


def fad_infinity(
    stats: ClipStats, reference: Gaussian, pools: np.ndarray | None = None, steps: int = FAD_INF_STEPS,
    seed: int = FAD_INF_SEED,
) -> dict[str, Any]:  # fmt: skip
    """FAD∞ of the clips in ``stats`` (see the module docstring), for each pool of clips.

    Args:
        pools: (r, size) clip indices, one pool per row (bootstrap resamples of the clips); None: one pool, every
            clip once.

    Returns:
        ``{"values": (r,) intercepts, "slopes": (r,), "r2": (r,), "sizes": subset sizes in clips}``.
    """
    clips = len(stats.counts)
    pools = np.arange(clips)[None] if pools is None else np.asarray(pools)
    size = pools.shape[1]
    sizes = sorted({int(round(k)) for k in np.linspace(max(2, size // 5), size, steps)})
    rng = np.random.default_rng(seed)
    rows = np.arange(len(pools))[:, None]
    xs, ys = [], []
    for k in sizes:
        order = np.argsort(rng.random((len(pools), size)), axis=1)[:, :k]  # k of each pool, without replacement
        chosen = pools[rows, order]  # (r, k) clip indices
        weights = np.zeros((len(pools), clips))
        np.add.at(weights, (np.broadcast_to(rows, chosen.shape), chosen), 1.0)
        xs.append(1.0 / (weights @ stats.counts))
        ys.append(stats.distances(reference, weights))
    x, y = np.stack(xs, axis=1), np.stack(ys, axis=1)  # (r, steps)
    x_mean, y_mean = x.mean(axis=1, keepdims=True), y.mean(axis=1, keepdims=True)
    slope = ((x - x_mean) * (y - y_mean)).sum(axis=1) / np.maximum(((x - x_mean) ** 2).sum(axis=1), 1e-300)
    intercept = y_mean[:, 0] - slope * x_mean[:, 0]
    residual = ((y - (intercept[:, None] + slope[:, None] * x)) ** 2).sum(axis=1)
    total = ((y - y_mean) ** 2).sum(axis=1)
    r2 = np.where(total > 0, 1 - residual / np.maximum(total, 1e-300), 1.0)
    return {"values": intercept, "slopes": slope, "r2": r2, "sizes": sizes}
