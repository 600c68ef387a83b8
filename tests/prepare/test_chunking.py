"""Chunking long tracks (tail policies), and the train/eval split by whole tracks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from musicgen_lora.config.arguments import TAIL_POLICIES
from musicgen_lora.config.parsing import parse_config
from musicgen_lora.errors import UserError
from musicgen_lora.models.codec import encode_clip
from musicgen_lora.prepare.cache_keys import module_fingerprint
from musicgen_lora.prepare.chunking import Chunk, plan_chunks, split_tracks
from musicgen_lora.prepare.encoding import encode_dataset
from musicgen_lora.prepare.sources import load_split

from ..conftest import RATE, base_argv, tone
from .conftest import prepared_split

# ------------------------------------------------------------------------------------ plan_chunks properties


def covered(chunks: list[Chunk]) -> set[int]:
    return {frame for c in chunks for frame in range(c.start, c.start + c.length)}


@pytest.mark.parametrize("policy", TAIL_POLICIES)
def test_plan_chunks_properties_for_random_lengths(policy):
    rng = np.random.default_rng(0)
    for _ in range(400):
        max_frames = int(rng.integers(1, 60))
        min_frames = int(rng.integers(1, max_frames + 1))
        frames = int(rng.integers(0, 8 * max_frames))
        chunks = plan_chunks(frames, max_frames, min_frames, policy)
        context = (frames, max_frames, min_frames, policy, chunks)
        if frames < min_frames:
            assert chunks == [], context
            continue
        if frames <= max_frames:
            assert chunks == [Chunk(0, frames)], context
            continue
        full, tail = divmod(frames, max_frames)
        # the full chunks are consecutive, from the start
        assert chunks[:full] == [Chunk(i * max_frames, max_frames) for i in range(full)], context
        assert all(min_frames <= c.length <= max_frames and c.start + c.length <= frames for c in chunks), context
        assert all(c.length + c.pad <= max_frames for c in chunks), context
        if policy == "merge":  # nothing lost, every chunk full length, the last one ends at the track's end
            assert covered(chunks) == set(range(frames)), context
            assert all(c.length == max_frames and c.pad == 0 for c in chunks), context
            assert len(chunks) == full + (tail > 0), context
            assert chunks[-1].start + chunks[-1].length == frames, context
        else:
            kept_tail = tail >= min_frames
            assert len(chunks) == full + kept_tail, context
            expected = frames if kept_tail else full * max_frames  # only a tail shorter than the minimum is lost
            assert covered(chunks) == set(range(expected)), context
            assert sum(c.length for c in chunks) == expected, context  # no overlap
            if policy == "pad":
                assert all(c.length + c.pad == max_frames for c in chunks), context
            else:
                assert all(c.pad == 0 for c in chunks), context


def test_plan_chunks_examples():
    # 265 frames, chunks of 100, minimum 50: tail of 65 frames
    assert plan_chunks(265, 100, 50, "merge") == [Chunk(0, 100), Chunk(100, 100), Chunk(165, 100)]
    assert plan_chunks(265, 100, 50, "drop") == [Chunk(0, 100), Chunk(100, 100), Chunk(200, 65)]
    assert plan_chunks(265, 100, 50, "pad") == [Chunk(0, 100), Chunk(100, 100), Chunk(200, 65, 35)]
    assert plan_chunks(230, 100, 50, "drop") == [Chunk(0, 100), Chunk(100, 100)]  # 30-frame tail dropped
    assert plan_chunks(230, 100, 50, "pad") == [Chunk(0, 100), Chunk(100, 100)]
    assert plan_chunks(200, 100, 50, "merge") == [Chunk(0, 100), Chunk(100, 100)]
    with pytest.raises(ValueError):
        plan_chunks(10, 5, 1, "wrap")


def test_split_tracks_is_deterministic_and_disjoint():
    train, evaluation = split_tracks(20, 25, seed=3)
    assert len(evaluation) == 5 and len(train) == 15
    assert sorted(train + evaluation) == list(range(20))
    assert split_tracks(20, 25, seed=3) == (train, evaluation)
    assert split_tracks(20, 25, seed=4) != (train, evaluation)
    assert split_tracks(2, 90, seed=0)[0] != []  # at least one training track
    assert len(split_tracks(10, 1, seed=0)[1]) == 1  # at least one evaluation track


# ------------------------------------------------------------------------------------ on real (tiny) codes

TRACK_SECONDS = {"long": 5.3, "short": 1.5, "tiny": 0.4, "exact": 4.0}


@pytest.fixture(scope="module")
def tracks_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("chunking") / "tracks"
    folder.mkdir()
    for index, (name, seconds) in enumerate(TRACK_SECONDS.items()):
        sf.write(folder / f"{name}.wav", tone(seconds, 200 + 60 * index, tremolo_hz=3), RATE)
        (folder / f"{name}.txt").write_text(f"tone {name}")
    return folder


@pytest.fixture(scope="module")
def fingerprint(model):
    return module_fingerprint(model.audio_encoder)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("chunking-cache")


def args_for(tmp_path, model_dir, dataset, cache, *extra):
    argv = base_argv(model_dir, dataset, tmp_path / "out", cache)
    return parse_config(argv + ["--max_duration_in_seconds", "2", "--min_duration_in_seconds", "1", *extra]).data


@pytest.fixture(scope="module")
def whole_codes(tracks_dir, model, fingerprint, cache, tmp_path_factory, tiny_model_dir) -> dict[str, list]:
    args = args_for(tmp_path_factory.mktemp("w"), tiny_model_dir, tracks_dir, cache)
    raw = load_split(args, "train")
    encoded = encode_dataset(raw, model, cache, fingerprint)
    return {Path(a).stem: codes for a, codes in zip(raw["audio"], encoded["codes"], strict=False)}


def test_default_keeps_whole_tracks_for_random_windows(tmp_path, tiny_model_dir, tracks_dir, model, fingerprint, cache):
    train = prepared_split(args_for(tmp_path, tiny_model_dir, tracks_dir, cache), "train", model, fingerprint, False)
    assert sorted(len(c[0]) for c in train["codes"]) == [75, 200, 265]  # the 0.4 s track is below the minimum
    # every example names its file, relative to the dataset folder, and has no chunk offset
    lengths = {source: len(codes[0]) for source, codes in zip(train["source"], train["codes"], strict=True)}
    assert lengths == {f"{name}.wav": round(seconds * 50) for name, seconds in TRACK_SECONDS.items() if seconds >= 1}
    assert "offset_seconds" not in train.column_names


@pytest.mark.parametrize(
    "policy, expected",
    [
        ("merge", {"long": [(0, 100), (100, 100), (165, 100)], "exact": [(0, 100), (100, 100)], "short": [(0, 75)]}),
        ("drop", {"long": [(0, 100), (100, 100), (200, 65)], "exact": [(0, 100), (100, 100)], "short": [(0, 75)]}),
        ("pad", {"long": [(0, 100), (100, 100), (200, 65)], "exact": [(0, 100), (100, 100)], "short": [(0, 75)]}),
    ],
)
def test_chunks_are_slices_of_the_track_codes(
    policy, expected, tmp_path, tiny_model_dir, tracks_dir, model, fingerprint, cache, whole_codes
):
    args = args_for(tmp_path, tiny_model_dir, tracks_dir, cache, "--chunk_long_tracks", "true", "--tail_policy", policy)
    train = prepared_split(args, "train", model, fingerprint, False)
    seen: dict[str, list] = {}
    for row in train:
        name = Path(row["source"]).stem
        start = round(row["offset_seconds"] * 50)
        codes = np.array(row["codes"])
        track = np.array(whole_codes[name])
        length = min(codes.shape[1], track.shape[1] - start)
        seen.setdefault(name, []).append((start, length))
        np.testing.assert_array_equal(codes[:, :length], track[:, start : start + length])
        assert row["text"] == f"tone {name}"
        if codes.shape[1] > length:  # padded with the codes of silence, to full length
            assert policy == "pad" and codes.shape[1] == 100
            silence = encode_clip(model.audio_encoder, np.zeros((1, 3 * RATE), np.float32))
            np.testing.assert_array_equal(codes[:, length:], silence[:, : 100 - length])
    assert seen == expected
    # no audio lost beyond what the policy says: a second run reads the cache and gives the same chunks
    again = prepared_split(args, "train", model, fingerprint, False)
    assert again["codes"] == train["codes"]


def test_split_by_track_keeps_every_chunk_of_a_track_on_one_side(tmp_path, tiny_model_dir, model, fingerprint, cache):
    folder = tmp_path / "many"
    folder.mkdir()
    rows = []
    for index in range(6):
        sf.write(folder / f"t{index}.wav", tone(4.5, 150 + 40 * index, tremolo_hz=3), RATE)
        rows.append({"file_name": f"t{index}.wav", "text": f"track {index}"})
    (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    def both(seed: int):
        args = args_for(
            tmp_path, tiny_model_dir, folder, cache, "--chunk_long_tracks", "true", "--eval_split_percentage", "34"
        )
        train = prepared_split(args, "train", model, fingerprint, False, seed=seed)
        evaluation = prepared_split(args, None, model, fingerprint, True, seed=seed)
        return train, evaluation

    train, evaluation = both(seed=0)
    train_tracks, eval_tracks = set(train["source"]), set(evaluation["source"])
    assert len(eval_tracks) == 2 and len(train_tracks) == 4 and not train_tracks & eval_tracks
    assert len(train) == 4 * 3 and len(evaluation) == 2 * 3  # 4.5 s in 2 s chunks, merge: 3 full chunks each
    assert {t for s in eval_tracks for t in evaluation["text"]} == {f"track {Path(s).stem[1:]}" for s in eval_tracks}
    again_train, again_eval = both(seed=0)
    assert set(again_eval["source"]) == eval_tracks and again_train["codes"] == train["codes"]
    assert any(set(both(seed=s)[1]["source"]) != eval_tracks for s in (1, 2, 3))


def test_options_are_validated(tmp_path, tiny_model_dir, tracks_dir, cache):
    with pytest.raises(UserError, match="tail_policy must be 'merge', 'drop' or 'pad'"):
        args_for(tmp_path, tiny_model_dir, tracks_dir, cache, "--tail_policy", "wrap")
    with pytest.raises(UserError, match=r"eval_split_percentage must be in \[0, 100\)"):
        args_for(tmp_path, tiny_model_dir, tracks_dir, cache, "--eval_split_percentage", "100")
    with pytest.raises(UserError, match="keep one of them"):
        args_for(tmp_path, tiny_model_dir, tracks_dir, cache, "--eval_split_percentage", "10", "--eval_split_name", "v")


def test_split_needs_two_tracks(tmp_path, tiny_model_dir, model, fingerprint, cache):
    folder = tmp_path / "one"
    folder.mkdir()
    sf.write(folder / "a.wav", tone(2.0, 300, tremolo_hz=3), RATE)
    (folder / "a.txt").write_text("a")
    args = args_for(tmp_path, tiny_model_dir, folder, cache, "--eval_split_percentage", "20")
    with pytest.raises(UserError, match="needs at least 2 readable tracks"):
        prepared_split(args, "train", model, fingerprint, False)


def test_bad_files_are_screened_before_tracks_are_held_out(tmp_path, tiny_model_dir, cache):
    """eval_split_percentage holds out a share of the readable tracks: bad files never count, never land in eval."""
    import datasets

    from musicgen_lora.prepare.cli import main as prepare_main

    folder = tmp_path / "songs"
    folder.mkdir()
    readable = [f"good{i}.wav" for i in range(3)]
    for index, name in enumerate(readable):
        sf.write(folder / name, tone(2.0, 200 + 50 * index, tremolo_hz=3), RATE)
    (folder / "bad0.wav").write_bytes(b"RIFFjunk")  # the bad files sort first: an early split would pick them
    (folder / "bad1.wav").write_bytes(b"")
    sf.write(folder / "bad2.wav", np.full(3200, np.nan, np.float32), RATE, subtype="FLOAT")
    sf.write(folder / "bad3.wav", np.zeros(1), RATE)
    names = sorted(p.name for p in folder.glob("*.wav"))
    (folder / "metadata.jsonl").write_text("".join(json.dumps({"file_name": n, "text": n}) + "\n" for n in names))
    out = tmp_path / "out"
    argv = base_argv(tiny_model_dir, folder, out, cache) + ["--eval_split_percentage", "50", "--seed", "3"]
    report = prepare_main(argv)
    held_out = [readable[i] for i in split_tracks(len(readable), 50, seed=3)[1]]
    train = datasets.load_from_disk(str(out / "prepared_data" / "train"))
    evaluation = datasets.load_from_disk(str(out / "prepared_data" / "eval"))
    assert sorted(set(evaluation["source"])) == held_out  # the share of the 3 readable tracks, chosen by seed
    assert sorted(set(train["source"]) | set(evaluation["source"])) == readable
    files = report["splits"]["train"]["files"]  # the bad files are reported once, with the training side
    assert (files["found"], files["read"], files["skipped"]) == (7, 3, 4)
    assert report["splits"]["eval"]["files"]["skipped"] == 0


def test_training_run_with_chunks_and_held_out_tracks(tmp_path, tiny_model_dir, tracks_dir, cache):
    from finetune_musicgen import main

    argv = base_argv(tiny_model_dir, tracks_dir, tmp_path / "run", cache) + [
        "--max_duration_in_seconds",
        "2",
        "--chunk_long_tracks",
        "true",
        "--tail_policy",
        "pad",
        "--eval_split_percentage",
        "30",
        "--max_steps",
        "2",
        "--per_device_train_batch_size",
        "2",
    ]
    result = main(argv)
    assert result["eval"] is not None and np.isfinite(result["eval"]["eval_loss"])
    assert json.loads((tmp_path / "run" / "finetune_config.json").read_text())["tail_policy"] == "pad"
