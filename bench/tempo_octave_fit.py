"""Fit the tempo estimator's octave decision (``OCTAVE_WEIGHTS``, ``OCTAVE_BIAS`` of musicgen_lora/audio/tempo.py) and
show how ``TEMPO_OCTAVE_SURE`` trades two-valued captions for right ones, on the ``tune`` pieces only.

Usage::

    python bench/tempo_octave_fit.py CORPUS_DIR [CORPUS_DIR ...] [--penalty 0.01]

Each folder is one written by ``bench/key_tempo_corpora.py`` (e.g. the chorales and folk tunes at their genres'
tempi, and again with ``--tempo-range 50,200``). For every ``tune`` excerpt the pulse is read as an octave pair
(:func:`~musicgen_lora.audio.tempo.pulse_octaves`), and the pairs that hold the true tempo (within 4 %) teach a
logistic regression whether the fast or the slow tempo of the pair is the beat (an L2 penalty on standardised
features, chosen by 5-fold cross-validation by piece). ``test`` excerpts are never read. Prints the weights to paste
into tempo.py and, per folder and threshold, the share of single-valued estimates that are right, of captions that
are right (a two-valued caption counts when either tempo is within 4 %) and of captions that are two-valued.
"""

from __future__ import annotations

import argparse
import json
import sys
import zlib
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.optimize import minimize

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from musicgen_lora.audio import tempo  # noqa: E402


def excerpt_features(folder: Path, split: str = "tune") -> list[dict]:
    """For every excerpt of ``split`` in ``folder``: the true tempo, the pair's slow tempo and the octave features."""
    rows = [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()]
    out = []
    for row in rows:
        if row["split"] != split or not row.get("bpm"):
            continue
        audio, sr = sf.read(folder / row["file"], dtype="float32")
        env = tempo.onset_envelope(audio, sr)
        pair = tempo.pulse_octaves(env)
        if pair is None:
            continue
        bpms, salience, _, slow, pulse = pair
        features = tempo.octave_features(env, bpms, salience, slow)
        out.append({"folder": "/".join(folder.parts[-2:]), "piece": row["piece"], "bpm": row["bpm"], "slow": slow,
                    "x": features, "pulse_is_fast": pulse != slow})  # fmt: skip
    return out


def label(row: dict) -> int | None:
    """1: the fast tempo of the pair is right (within 4 %), 0: the slow one, None: neither (a metre error)."""
    for value, fast in ((2 * row["slow"], 1), (row["slow"], 0)):
        if abs(value / row["bpm"] - 1) <= 0.04:
            return fast
    return None


def fit(x: np.ndarray, y: np.ndarray, penalty: float) -> tuple[np.ndarray, float]:
    """L2-penalised logistic regression on standardised features; returns raw-feature weights and bias."""
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-9
    z = (x - mean) / scale

    def loss(theta):
        logits = z @ theta[:-1] + theta[-1]
        value = np.mean(np.logaddexp(0.0, logits) - y * logits) + penalty * np.sum(theta[:-1] ** 2)
        p = 1.0 / (1.0 + np.exp(-logits))
        grad = np.append(z.T @ (p - y) / len(y) + 2 * penalty * theta[:-1], np.mean(p - y))
        return value, grad

    theta = minimize(loss, np.zeros(z.shape[1] + 1), jac=True, method="L-BFGS-B").x
    weights = theta[:-1] / scale
    return weights, float(theta[-1] - np.dot(weights, mean))


def probability(x: np.ndarray, weights: np.ndarray, bias: float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(x @ weights + bias)))


def cross_validated_accuracy(rows: list[dict], penalty: float, folds: int = 5) -> float:
    fold = np.array([zlib.crc32(r["piece"].encode()) % folds for r in rows])
    x, y = np.array([r["x"] for r in rows]), np.array([label(r) for r in rows], float)
    hits = []
    for k in range(folds):
        weights, bias = fit(x[fold != k], y[fold != k], penalty)
        hits += list((probability(x[fold == k], weights, bias) >= 0.5) == y[fold == k])
    return float(np.mean(hits))


def caption_table(rows: list[dict], weights: np.ndarray, bias: float, grid) -> str:
    """Per folder and (switch, sure) of ``grid``: single value right, caption right, two-valued (all tune excerpts,
    metre errors counted as wrong), as tempo_from_envelope decides: the pulse's octave is switched where its
    probability is under ``switch``, and a caption names both where the one chosen stays under ``sure``."""
    lines = [
        "| folder | switch | sure | n | single value right | caption right | two-valued |",
        "|---|---|---|---|---|---|---|",
    ]
    groups = {folder: [r for r in rows if r["folder"] == folder] for folder in sorted({r["folder"] for r in rows})}
    for parent in sorted({folder.split("/")[0] for folder in groups}):
        groups[f"{parent} (all)"] = [r for r in rows if r["folder"].split("/")[0] == parent]
    for folder, group in groups.items():
        fast = probability(np.array([r["x"] for r in group]), weights, bias)
        pulse_fast = np.array([r["pulse_is_fast"] for r in group])
        labels = [label(r) for r in group]
        for switch, sure in grid:
            kept = np.where(pulse_fast, fast, 1 - fast)
            chosen_fast = pulse_fast ^ (kept < switch)
            chosen = np.where(kept < switch, 1 - kept, kept)
            single = [lab is not None and bool(c) == bool(lab) for c, lab in zip(chosen_fast, labels, strict=True)]
            two = chosen < sure
            right = [s or (t and lab is not None) for s, t, lab in zip(single, two, labels, strict=True)]
            lines.append(
                f"| {folder} | {switch:.2f} | {sure:.2f} | {len(group)} | {100 * np.mean(single):.1f} % | "
                f"{100 * np.mean(right):.1f} % | {100 * np.mean(two):.1f} % |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus_dirs", type=Path, nargs="+", help="folders written by key_tempo_corpora.py")
    parser.add_argument("--penalty", type=float, default=None, help="L2 penalty (default: cross-validated)")
    parser.add_argument("--cache", type=Path, default=None, help="JSON file keeping the features between runs")
    args = parser.parse_args(argv)
    if args.cache and args.cache.is_file():
        rows = [dict(r, x=np.array(r["x"])) for r in json.loads(args.cache.read_text())]
    else:
        rows = [r for folder in args.corpus_dirs for r in excerpt_features(folder)]
        if args.cache:
            args.cache.write_text(json.dumps([dict(r, x=[float(v) for v in r["x"]]) for r in rows]))
    known = [r for r in rows if label(r) is not None]
    penalty = args.penalty
    if penalty is None:
        scores = {p: cross_validated_accuracy(known, p) for p in (0.0001, 0.001, 0.01, 0.1)}
        print("cross-validated octave accuracy by penalty:", {p: round(s, 3) for p, s in scores.items()})
        penalty = max(scores, key=scores.get)
    weights, bias = fit(np.array([r["x"] for r in known]), np.array([label(r) for r in known], float), penalty)
    print(f"{len(known)} of {len(rows)} tune excerpts hold the true tempo in their octave pair; penalty {penalty}")
    print("OCTAVE_WEIGHTS = (" + ", ".join(f"{w:.3f}" for w in weights) + ")")
    print(f"OCTAVE_BIAS = {bias:.3f}")
    grid = [(switch, sure) for switch in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5) for sure in (0.5, 0.6, 0.7, 0.75, 0.8, 0.85)]
    print(caption_table(rows, weights, bias, grid))
    return {"weights": [float(w) for w in weights], "bias": bias, "penalty": penalty}


if __name__ == "__main__":
    print(json.dumps(main()))
