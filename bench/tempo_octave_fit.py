"""Fit the tempo estimator's choice among the pulse's relatives (``OCTAVE_WEIGHTS``, ``OCTAVE_BIAS``,
``METRE_WEIGHTS``, ``METRE_BIAS`` of musicgen_lora/audio/tempo.py) and choose ``TEMPO_SWITCH`` and ``TEMPO_SURE``, on
the ``tune`` pieces only.

Usage::

    python bench/tempo_octave_fit.py --genres DIR [DIR ...] --wide DIR [DIR ...] [--cache FEATURES.json]

Each folder is one written by ``bench/key_tempo_corpora.py``: ``--genres`` the chorales and folk tunes at their
genres' tempi, ``--wide`` the same pieces with ``--tempo-range 50,200``. For every ``tune`` excerpt the pulse is found
(:func:`~musicgen_lora.audio.tempo.find_pulse`) and its candidates are measured: the three octave pairs of the metre
families (x 1, x 3/2, x 2/3) with their octave features, and the metre features. The excerpts whose truth is one of
the candidates (within 4 %) teach two models: a multinomial logistic regression, which family holds the beat, and a
logistic regression, which tempo of the true family's pair is the beat; each with an L2 penalty on standardised
features chosen by 5-fold cross-validation by piece (log-loss). ``test`` excerpts are never read.

Then, with each excerpt's probabilities from the folds that did not see its piece, the table of what captions would
say per folder and (switch, sure), and the constants chosen by the rule of bench/RESULTS.md ("Captions at every
tempo"): the single value at the genres' tempi within ``--single-margin`` of the pulse kept always,
two-valued captions at most ``--two-valued`` of all, then the best mean of the captions right at both tempo ranges.
Prints the weights and constants to paste into tempo.py.
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

PENALTIES = (0.0003, 0.001, 0.003, 0.01, 0.03, 0.1)
SWITCHES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
SURES = (0.6, 0.7, 0.75, 0.8, 0.85, 0.9)


def within(estimate: float, truth: float) -> bool:
    return abs(estimate / truth - 1.0) <= 0.04


def excerpt_features(folder: Path, tempo_range: str, split: str = "tune") -> list[dict]:
    """For every excerpt of ``split`` in ``folder``: the truth, the pulse, each family's pair (its slow tempo) and
    octave features, and the metre features."""
    rows = [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()]
    out = []
    for row in rows:
        if row["split"] != split or not row.get("bpm"):
            continue
        audio, sr = sf.read(folder / row["file"], dtype="float32")
        env, bass = tempo.onset_envelopes(audio, sr)
        found = tempo.find_pulse(env)
        if found is None:
            continue
        bpms, salience, _, pulse = found
        slows = [tempo.octave_pair(pulse * factor) for factor in tempo.METRE_FACTORS]
        out.append({"folder": "/".join(folder.parts[-2:]), "range": tempo_range, "piece": row["piece"],
                    "bpm": row["bpm"], "pulse": pulse, "slows": slows,
                    "octave_x": [tempo.octave_features(env, bpms, salience, s, bass) for s in slows],
                    "metre_x": tempo.metre_features(env, bpms, salience, pulse)})  # fmt: skip
    return out


def label(row: dict) -> tuple[int, int] | None:
    """(family, 1 if the fast tempo of its pair is the beat else 0) of the candidate within 4 % of the truth; None
    where no candidate is (the beat is none of the pulse's relatives)."""
    for family, slow in enumerate(row["slows"]):
        for value, fast in ((2 * slow, 1), (slow, 0)):
            if within(value, row["bpm"]):
                return family, fast
    return None


def fit(x: np.ndarray, y: np.ndarray, penalty: float, classes: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """L2-penalised (multinomial) logistic regression on standardised features, the first class scoring 0; returns
    raw-feature weights ``(classes - 1, features)`` and biases ``(classes - 1,)``."""
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-9
    z = (x - mean) / scale
    onehot = np.eye(classes)[y.astype(int)]
    shape = (classes - 1, z.shape[1] + 1)

    def loss(theta):
        theta = theta.reshape(shape)
        logits = np.hstack([np.zeros((len(z), 1)), z @ theta[:, :-1].T + theta[:, -1]])
        top = logits.max(axis=1, keepdims=True)
        log_p = logits - top - np.log(np.exp(logits - top).sum(axis=1, keepdims=True))
        value = -np.mean(np.sum(onehot * log_p, axis=1)) + penalty * np.sum(theta[:, :-1] ** 2)
        residual = (np.exp(log_p) - onehot)[:, 1:] / len(z)
        grad = np.hstack([residual.T @ z + 2 * penalty * theta[:, :-1], residual.sum(axis=0)[:, None]])
        return value, grad.ravel()

    theta = minimize(loss, np.zeros(np.prod(shape)), jac=True, method="L-BFGS-B").x.reshape(shape)
    weights = theta[:, :-1] / scale
    return weights, theta[:, -1] - weights @ mean


def probabilities(x: np.ndarray, weights: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Each class's probability, ``(rows, classes)``, the first class scoring 0."""
    logits = np.hstack([np.zeros((len(x), 1)), x @ np.atleast_2d(weights).T + bias])
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


def training_sets(rows: list[dict]) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, int]]:
    """(features, labels, row indices, classes) of each model, from the rows whose truth is a candidate."""
    labelled = [(i, label(r)) for i, r in enumerate(rows) if label(r) is not None]
    index = np.array([i for i, _ in labelled])
    return {
        "octave": (np.array([rows[i]["octave_x"][f] for i, (f, _) in labelled]),
                   np.array([fast for _, (_, fast) in labelled]), index, 2),
        "metre": (np.array([rows[i]["metre_x"] for i, _ in labelled]),
                  np.array([f for _, (f, _) in labelled]), index, len(tempo.METRE_FACTORS)),
    }  # fmt: skip


def folds_of(rows: list[dict], folds: int = 5) -> np.ndarray:
    return np.array([zlib.crc32(r["piece"].encode()) % folds for r in rows])


def cross_validated_loss(x, y, fold, classes: int, penalty: float) -> float:
    losses = []
    for k in sorted(set(fold)):
        weights, bias = fit(x[fold != k], y[fold != k], penalty, classes)
        p = probabilities(x[fold == k], weights, bias)
        losses += list(-np.log(p[np.arange(len(p)), y[fold == k]] + 1e-12))
    return float(np.mean(losses))


def candidates(row: dict, models: dict) -> list[tuple[float, float]]:
    """The six candidates of an excerpt with their probabilities, most probable first (as tempo_candidates)."""
    family = probabilities(np.array([row["metre_x"]]), *models["metre"])[0]
    fast = probabilities(np.array(row["octave_x"]), *models["octave"])[:, 1]
    out = [(2 * s, pf * f) for s, pf, f in zip(row["slows"], family, fast, strict=True)]
    out += [(s, pf * (1 - f)) for s, pf, f in zip(row["slows"], family, fast, strict=True)]
    return sorted(out, key=lambda c: -c[1])


def caption(row: dict, ranked: list[tuple[float, float]], switch: float, sure: float) -> tuple[bool, bool, bool]:
    """(single value right, caption right, two-valued) as tempo_from_envelope decides."""
    kept = [c for c in ranked if abs(c[0] / row["pulse"] - 1.0) < 0.01]
    bpm, probability = kept[0] if kept and kept[0][1] >= switch else ranked[0]
    other = max((c for c in ranked if c[0] != bpm), key=lambda c: c[1])[0]
    two = probability < sure
    single = within(bpm, row["bpm"])
    return single, single or (two and within(other, row["bpm"])), two


def out_of_fold_candidates(rows: list[dict], penalties: dict[str, float]) -> list[list[tuple[float, float]]]:
    """Each row's candidates from models fitted on the folds that do not hold its piece."""
    fold = folds_of(rows)
    ranked: list = [None] * len(rows)
    for k in sorted(set(fold)):
        train = [r for r, f in zip(rows, fold, strict=True) if f != k]
        models = {name: fit(x, y, penalties[name], classes)[:2]
                  for name, (x, y, _, classes) in training_sets(train).items()}  # fmt: skip
        for i in np.flatnonzero(fold == k):
            ranked[i] = candidates(rows[i], models)
    return ranked


def caption_table(rows: list[dict], ranked: list, grid) -> tuple[str, dict]:
    """Per folder and tempo range (all its folders) and (switch, sure): single value right, caption right,
    two-valued (metre errors counted as wrong). Returns the markdown table and the figures."""
    lines = [
        "| folder | switch | sure | n | single value right | caption right | two-valued |",
        "|---|---|---|---|---|---|---|",
    ]
    groups = {folder: [i for i, r in enumerate(rows) if r["folder"] == folder]
              for folder in sorted({r["folder"] for r in rows})}  # fmt: skip
    for tempo_range in ("genres", "wide"):
        groups[f"{tempo_range} (all)"] = [i for i, r in enumerate(rows) if r["range"] == tempo_range]
    figures = {}
    for folder, members in groups.items():
        for switch, sure in grid:
            result = np.mean([caption(rows[i], ranked[i], switch, sure) for i in members], axis=0)
            figures[(folder, switch, sure)] = result
            lines.append(f"| {folder} | {switch:.2f} | {sure:.2f} | {len(members)} | {100 * result[0]:.1f} % | "
                         f"{100 * result[1]:.1f} % | {100 * result[2]:.1f} % |")  # fmt: skip
    return "\n".join(lines), figures


def choose(rows: list[dict], ranked: list, grid, single_margin: float, two_valued: float) -> tuple[float, float]:
    """The rule: the single value at the genres' tempi within ``single_margin`` of the pulse kept always (switch
    0), two-valued captions at most ``two_valued`` of all, then the best mean of caption right over the two ranges."""
    wide = [i for i, r in enumerate(rows) if r["range"] == "wide"]
    narrow = [i for i, r in enumerate(rows) if r["range"] == "genres"]
    baseline = np.mean([within(rows[i]["pulse"], rows[i]["bpm"]) for i in narrow])
    best, chosen = -1.0, None
    for switch, sure in grid:
        at = {name: np.mean([caption(rows[i], ranked[i], switch, sure) for i in members], axis=0)
              for name, members in (("wide", wide), ("narrow", narrow))}  # fmt: skip
        share = np.mean([caption(rows[i], ranked[i], switch, sure)[2] for i in range(len(rows))])
        if at["narrow"][0] < baseline - single_margin or share > two_valued:
            continue
        score = (at["wide"][1] + at["narrow"][1]) / 2
        if score > best + 1e-12:
            best, chosen = score, (switch, sure)
    return chosen


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--genres", type=Path, nargs="+", required=True, help="renders at the genres' tempi")
    parser.add_argument("--wide", type=Path, nargs="+", required=True, help="the same pieces at 50-200 bpm")
    parser.add_argument("--cache", type=Path, default=None, help="JSON file keeping the features between runs")
    parser.add_argument("--single-margin", type=float, default=0.01, help="the rule's margin (default 1 point)")
    parser.add_argument("--two-valued", type=float, default=1 / 3, help="the rule's cap (default a third)")
    args = parser.parse_args(argv)
    if args.cache and args.cache.is_file():
        rows = json.loads(args.cache.read_text())
    else:
        folders = [(folder, "genres") for folder in args.genres] + [(folder, "wide") for folder in args.wide]
        rows = [r for folder, tempo_range in folders for r in excerpt_features(folder, tempo_range)]
        rows = [dict(r, octave_x=[[float(v) for v in x] for x in r["octave_x"]],
                     metre_x=[float(v) for v in r["metre_x"]]) for r in rows]  # fmt: skip
        if args.cache:
            args.cache.write_text(json.dumps(rows))
    fold = folds_of(rows)
    penalties, models = {}, {}
    for name, (x, y, index, classes) in training_sets(rows).items():
        losses = {p: cross_validated_loss(x, y, fold[index], classes, p) for p in PENALTIES}
        print(f"{name}: {len(y)} of {len(rows)} tune excerpts hold the truth among the candidates; cross-validated "
              "log-loss by penalty:", {p: round(v, 4) for p, v in losses.items()})  # fmt: skip
        penalties[name] = min(losses, key=losses.get)
        models[name] = fit(x, y, penalties[name], classes)
    weights, bias = models["octave"]
    print("OCTAVE_WEIGHTS = (" + ", ".join(f"{w:.3f}" for w in weights[0]) + ")")
    print(f"OCTAVE_BIAS = {bias[0]:.3f}")
    weights, bias = models["metre"]
    print("METRE_WEIGHTS = (" + ", ".join("(" + ", ".join(f"{w:.3f}" for w in row) + ")" for row in weights) + ")")
    print("METRE_BIAS = (" + ", ".join(f"{b:.3f}" for b in bias) + ")")
    ranked = out_of_fold_candidates(rows, penalties)
    grid = [(switch, sure) for switch in SWITCHES for sure in SURES]
    print(caption_table(rows, ranked, grid)[0])
    switch, sure = choose(rows, ranked, grid, args.single_margin, args.two_valued)
    print(f"TEMPO_SWITCH = {switch}\nTEMPO_SURE = {sure}")
    weights = {name: [m.tolist() for m in model] for name, model in models.items()}
    return {"penalties": penalties, "switch": switch, "sure": sure, "weights": weights}


if __name__ == "__main__":
    print(json.dumps(main()))
