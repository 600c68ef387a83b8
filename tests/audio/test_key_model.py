"""The key model of musicgen_lora/audio/key.py and the script that fits it (bench/key_weights_fit.py).

Its accuracy on real music is tests/audio/test_caption_accuracy.py's; here: the scores follow a transposition, the
fitted weights read keys from the tonic, and the fitting script learns keys from labelled examples it has not seen.
"""

from __future__ import annotations

import numpy as np
import pytest

from musicgen_lora.audio import key as key_module

from ..conftest import load_bench_script


@pytest.fixture(scope="module")
def fitting_script():
    return load_bench_script("key_weights_fit")


def _chroma_of_key(
    tonic: int, mode: str, rng: np.random.Generator, steadiness: float = 2.0
) -> tuple[np.ndarray, np.ndarray]:
    """A noisy chroma drawn around the Albrecht & Shanahan profile of a key, and a bass chroma leaning on its tonic
    and fifth: what a transcription of music in that key looks like, roughly. Each pitch class is scaled by a gamma
    variable of mean 1 and shape ``steadiness`` (2: a deviation of 0.7, 10: of 0.3)."""
    profile = key_module.MAJOR_PROFILE if mode == "major" else key_module.MINOR_PROFILE
    chroma = np.roll(profile, tonic) * rng.gamma(steadiness, 1 / steadiness, 12)
    bass = np.zeros(12)
    bass[[tonic, (tonic + 7) % 12]] = rng.gamma(steadiness, 1 / steadiness, 2)
    return chroma, bass + 0.05 * rng.random(12)


def test_scores_are_the_weights_read_from_each_tonic():
    rng = np.random.default_rng(0)
    chroma, bass = rng.random(12), rng.random(12)
    features = key_module.key_features(chroma, bass)
    scores = key_module.key_scores(chroma, bass)
    for mode in (0, 1):
        for tonic in (0, 5, 11):
            expected = sum(
                key_module.KEY_WEIGHTS[mode, f, i] * features[f, (tonic + i) % 12] for f in range(3) for i in range(12)
            )
            expected += key_module.MINOR_BIAS if mode == 1 else 0.0
            assert scores[mode, tonic] == pytest.approx(expected)


@pytest.mark.parametrize("shift", [1, 5, 7])
def test_transposing_the_music_transposes_the_key(shift):
    rng = np.random.default_rng(shift)
    chroma, bass = rng.random(12), rng.random(12)
    scores = key_module.key_scores(chroma, bass)
    moved = key_module.key_scores(np.roll(chroma, shift), np.roll(bass, shift))
    np.testing.assert_allclose(moved, np.roll(scores, shift, axis=1))


def test_the_shipped_weights_name_textbook_keys():
    # every one of the 24 keys, from its own profile with a tonic-and-fifth bass: the tonic and the mode must win
    rng = np.random.default_rng(1)
    right = 0
    for tonic in range(12):
        for mode in ("major", "minor"):
            scores = key_module.key_scores(*_chroma_of_key(tonic, mode, rng, steadiness=10.0))
            best_mode, best_tonic = np.unravel_index(np.argmax(scores), scores.shape)
            right += (int(best_tonic), ("major", "minor")[best_mode]) == (tonic, mode)
    assert right >= 22, right


def test_the_fit_learns_keys_it_was_not_shown(fitting_script):
    rng = np.random.default_rng(2)
    examples = []
    for _ in range(20):
        for tonic in range(12):
            for mode in ("major", "minor"):
                chroma, bass = _chroma_of_key(tonic, mode, rng)
                examples.append((key_module.key_features(chroma, bass), 2 * tonic + (mode == "minor")))
    features = np.stack([f for f, _ in examples])
    labels = np.array([label for _, label in examples])
    train = rng.random(len(labels)) < 0.5
    weights, minor_bias = fitting_script.fit(features[train], labels[train], penalty=0.001)
    held_out = fitting_script.accuracy(weights, minor_bias, features[~train], labels[~train])
    untrained = fitting_script.accuracy(np.zeros_like(weights), 0.0, features[~train], labels[~train])
    assert held_out >= 0.9 and untrained < 0.1, (held_out, untrained)
    # read from the tonic, the fitted chroma weights favour the notes of the key's triad over the tritone
    for mode, third in ((0, 4), (1, 3)):
        assert min(weights[mode, 0, [0, third, 7]]) > weights[mode, 0, 6], weights[mode, 0]


def test_cross_validation_scores_what_was_held_out(fitting_script):
    rng = np.random.default_rng(3)
    excerpts = []
    for piece in range(60):
        tonic, mode = piece % 12, ("major", "minor")[piece % 2]
        for _ in range(2):  # two renderings of each piece
            chroma, bass = _chroma_of_key(tonic, mode, rng)
            features = key_module.key_features(chroma, bass)
            excerpts.append({"features": features, "label": 2 * tonic + (mode == "minor"), "group": str(piece)})
    assert fitting_script.cross_validate(excerpts, 0.001, folds=5) >= 0.8
    # labels that have nothing to do with the music: held-out folds are at chance, whatever was learned on the rest
    shuffled = [{**e, "label": int(rng.integers(24))} for e in excerpts]
    assert fitting_script.cross_validate(shuffled, 0.001, folds=5) <= 0.2


def test_the_tests_demo_seed_is_never_fitted(fitting_script):
    with pytest.raises(SystemExit, match="error: demo seed 11 is the one the tests measure on"):
        fitting_script.demo_excerpts(fitting_script.TESTS_DEMO_SEED)


def test_fitted_constants_print_as_python(fitting_script):
    weights = np.arange(72, dtype=float).reshape(2, 3, 12) / 100
    namespace = {"np": np}
    exec(fitting_script.python_constants(weights, -0.25), namespace)
    np.testing.assert_allclose(namespace["KEY_WEIGHTS"], weights)
    assert namespace["MINOR_BIAS"] == -0.25


@pytest.mark.parametrize(
    "argv, message",
    [
        (["{missing}"], "has no manifest.jsonl"),
        (["{empty}", "--penalties", "a,b"], "--penalties numbers"),
        (["{empty}", "--folds", "1"], "--folds must be at least 2"),
        (["{empty}", "--demo-seeds", ""], "fewer than two keys"),
    ],
)
def test_bad_arguments_get_one_line(fitting_script, tmp_path, capsys, argv, message):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "manifest.jsonl").write_text("")
    argv = [a.format(missing=tmp_path / "nowhere", empty=empty) for a in argv]
    with pytest.raises(SystemExit) as stop:
        fitting_script.main(argv)
    assert stop.value.code == 2
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert "error:" in last and message in last, stderr
