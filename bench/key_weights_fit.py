"""Fit the key model of ``musicgen_lora/audio/key.py`` (``KEY_WEIGHTS`` and ``MINOR_BIAS``) on real music.

Usage::

    python bench/key_weights_fit.py CORPUS_DIR [CORPUS_DIR ...] [--demo-seeds 0,5] [--folds 5]
        [--penalties 0.001,0.003,0.01,0.03] [--json OUT.json]

Reads the excerpts of the ``tune`` split of folders written by ``bench/key_tempo_corpora.py`` (their ``test`` split
is never read) and the clips of the demo corpus for each seed of ``--demo-seeds`` (20 clips of 6 s each, written by
``musicgen_lora.demo.synth`` into a temporary folder; seed 11 is the tests' own and is refused), computes each one's
key features with ``musicgen_lora.audio.key``, chooses the L2 penalty by cross-validation (folds by piece, so that
two renderings of one piece never sit on both sides), fits the model with it on every excerpt read, and prints the
constants to paste into key.py with the cross-validated accuracy of each penalty.

The model: multinomial logistic regression over the 24 keys, whose score for a key is
``key.scores_from_features`` -- the same weights for the 12 tonics of a mode, read from the tonic.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.optimize import minimize

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from musicgen_lora.audio import key as key_module  # noqa: E402
from musicgen_lora.audio.analysis import parse_key  # noqa: E402
from musicgen_lora.demo.synth import synthesize_corpus  # noqa: E402

TESTS_DEMO_SEED = 11  # tests/audio/test_analysis.py measures the estimators on this seed: never fitted on
DEMO_CLIPS, DEMO_SECONDS = 20, 6.0


def audio_features(path: Path) -> np.ndarray:
    """The key features (3, 12) of one audio file."""
    audio, sr = sf.read(path, dtype="float32", always_2d=True)
    chroma, bass = key_module.pitch_class_chromas(key_module.note_salience(audio.T, sr))
    return key_module.key_features(chroma, bass)


def key_class(text: str) -> int:
    """A key's class: ``2 * tonic + (1 if minor else 0)``, the order of ``scores.reshape(-1)`` transposed."""
    tonic, mode = parse_key(text)
    return 2 * tonic + (mode == "minor")


def tune_excerpts(folder: Path) -> list[dict]:
    """The keyed excerpts of the ``tune`` split of one corpus folder: ``{features, label, group}`` each."""
    rows = [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines() if line.strip()]
    return [
        {"features": audio_features(folder / r["file"]), "label": key_class(r["key"]), "group": r["piece"]}
        for r in rows
        if r.get("key") and r["split"] == "tune"
    ]


def demo_excerpts(seed: int) -> list[dict]:
    """The clips of the demo corpus for ``seed``, each its own group."""
    if seed == TESTS_DEMO_SEED:
        raise SystemExit(f"error: demo seed {seed} is the one the tests measure on; choose another")
    with tempfile.TemporaryDirectory() as folder:
        rows = synthesize_corpus(folder, clips=DEMO_CLIPS, seconds=DEMO_SECONDS, seed=seed)
        return [
            {"features": audio_features(Path(folder) / r["file_name"]), "label": key_class(r["key"]),
             "group": f"demo{seed}/{r['file_name']}"}
            for r in rows
        ]  # fmt: skip


def class_scores(weights: np.ndarray, minor_bias: float, features: np.ndarray) -> np.ndarray:
    """Scores (n, 24) of features (n, 3, 12), column ``key_class`` = 2 * tonic + (1 if minor else 0)."""
    scores = key_module.scores_from_features(features, weights, minor_bias)  # (n, mode, tonic)
    return scores.transpose(0, 2, 1).reshape(len(features), 24)


def fit(features: np.ndarray, labels: np.ndarray, penalty: float) -> tuple[np.ndarray, float]:
    """Weights (2, 3, 12) and minor bias maximising the mean log-likelihood of ``labels`` (n,) given ``features``
    (n, 3, 12), minus ``penalty`` times the squared weights (the bias is not penalised)."""
    n = len(labels)
    from_tonic = features[:, :, key_module.TONIC_FIRST]  # (n, feature, tonic, pitch class from the tonic)
    size = 2 * features.shape[1] * 12

    def loss_and_gradient(theta: np.ndarray) -> tuple[float, np.ndarray]:
        weights = theta[:size].reshape(2, features.shape[1], 12)
        flat = class_scores(weights, theta[size], features)
        top = flat.max(axis=1, keepdims=True)
        log_total = np.log(np.exp(flat - top).sum(axis=1)) + top[:, 0]
        loss = (log_total - flat[np.arange(n), labels]).mean() + penalty * float(theta[:size] @ theta[:size])
        residual = np.exp(flat - log_total[:, None])
        residual[np.arange(n), labels] -= 1
        residual = residual.reshape(n, 12, 2).transpose(0, 2, 1) / n  # (n, mode, tonic)
        gradient_weights = np.einsum("nmt,nfti->mfi", residual, from_tonic) + 2 * penalty * weights
        return loss, np.concatenate([gradient_weights.ravel(), [residual[:, 1].sum()]])

    theta = minimize(loss_and_gradient, np.zeros(size + 1), jac=True, method="L-BFGS-B").x
    return theta[:size].reshape(2, features.shape[1], 12), float(theta[size])


def accuracy(weights: np.ndarray, minor_bias: float, features: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(class_scores(weights, minor_bias, features).argmax(axis=1) == labels))


def cross_validate(excerpts: list[dict], penalty: float, folds: int) -> float:
    """Accuracy on held-out folds (assigned by a hash of each excerpt's piece)."""
    fold = np.array([zlib.crc32(e["group"].encode()) % folds for e in excerpts])
    features = np.stack([e["features"] for e in excerpts])
    labels = np.array([e["label"] for e in excerpts])
    hits = 0.0
    for k in range(folds):
        weights, bias = fit(features[fold != k], labels[fold != k], penalty)
        hits += accuracy(weights, bias, features[fold == k], labels[fold == k]) * np.sum(fold == k)
    return hits / len(excerpts)


def python_constants(weights: np.ndarray, minor_bias: float) -> str:
    """The fitted constants as key.py's source."""

    def row(values: np.ndarray) -> str:
        return f"            [{', '.join(f'{v:.3f}' for v in values)}],\n"

    modes = "".join("        [\n" + "".join(row(r) for r in mode) + "        ],\n" for mode in weights)
    return f"KEY_WEIGHTS = np.array(\n    [\n{modes}    ]\n)\nMINOR_BIAS = {minor_bias:.3f}"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus_dirs", type=Path, nargs="+", help="folders written by key_tempo_corpora.py")
    parser.add_argument("--demo-seeds", default="0,5", help="comma-separated demo corpus seeds ('' for none)")
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds")
    parser.add_argument("--penalties", default="0.001,0.003,0.01,0.03", help="L2 penalties to choose from")
    parser.add_argument("--json", type=Path, default=None, help="also write the constants and figures here")
    args = parser.parse_args(argv)
    for folder in args.corpus_dirs:
        if not (folder / "manifest.jsonl").is_file():
            parser.error(f"{folder} has no manifest.jsonl: write the corpus with bench/key_tempo_corpora.py first")
    try:
        seeds = [int(seed) for seed in filter(None, args.demo_seeds.split(","))]
        penalties = [float(p) for p in args.penalties.split(",")]
    except ValueError as error:
        parser.error(f"--demo-seeds takes integers and --penalties numbers, comma-separated ({error})")
    if args.folds < 2 or not penalties or min(penalties) < 0:
        parser.error("--folds must be at least 2 and --penalties at least one number >= 0")
    excerpts = [e for folder in args.corpus_dirs for e in tune_excerpts(folder)]
    excerpts += [e for seed in seeds for e in demo_excerpts(seed)]
    if len({e["label"] for e in excerpts}) < 2:
        parser.error("the tune split of these corpora holds fewer than two keys: nothing to fit")
    scores = {p: cross_validate(excerpts, p, args.folds) for p in penalties}
    for penalty, score in scores.items():
        print(f"penalty {penalty:g}: {100 * score:.1f} % exactly right on held-out folds ({len(excerpts)} excerpts)")
    chosen = max(penalties, key=lambda p: (scores[p], p))  # ties: the stronger penalty
    weights, minor_bias = fit(
        np.stack([e["features"] for e in excerpts]), np.array([e["label"] for e in excerpts]), chosen
    )
    print(f"\nchosen penalty {chosen:g}; paste into musicgen_lora/audio/key.py:\n")
    print(python_constants(weights, minor_bias))
    result = {"penalty": chosen, "cross_validated": scores, "excerpts": len(excerpts),
              "key_weights": np.round(weights, 3).tolist(), "minor_bias": round(minor_bias, 3)}  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
