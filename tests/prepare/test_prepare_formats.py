"""Real-world folders: every libsndfile format, rate and channel count prepares, bad files are skipped and listed in
data_report.json with their reason (or stop the run with strict), formats that need FFmpeg go through torchcodec or
are reported with the fix, and file-like dataset names that do not exist are "not found", not Hub ids."""

from __future__ import annotations

import json
import re
import sys
import types
from pathlib import Path

import datasets
import numpy as np
import pytest
import soundfile as sf

import musicgen_lora.audio.io as audio
from musicgen_lora.config.parsing import parse_config
from musicgen_lora.errors import UserError
from musicgen_lora.prepare import screening
from musicgen_lora.prepare.cli import main as prepare_main
from musicgen_lora.prepare.sources import load_split

from ..conftest import base_argv, tone

FRAME_RATE = 50  # the tiny model's codec frames per second


# name -> (seconds, sampling rate, channels, soundfile subtype or None for the format's default)
GOOD = {
    "a_16k_mono.wav": (2.5, 16000, 1, "PCM_16"),
    "b_44k_stereo.flac": (2.0, 44100, 2, None),
    "c_48k_mono.ogg": (3.0, 48000, 1, None),
    "d_44k_stereo.mp3": (2.0, 44100, 2, None),
    "e_48k_stereo_float.wav": (1.5, 48000, 2, "FLOAT"),
}
BAD = {"corrupt.wav": "unreadable", "empty.flac": "empty", "silent.wav": "silent"}


@pytest.fixture(scope="module")
def mixed_corpus(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("mixed") / "songs"
    folder.mkdir()
    for index, (name, (seconds, rate, channels, subtype)) in enumerate(GOOD.items()):
        sf.write(folder / name, tone(seconds, 220.0 * (index + 1), rate=rate, channels=channels), rate, subtype=subtype)
    (folder / "a_16k_mono.txt").write_text("lofi piano")
    (folder / "corrupt.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt garbage, not audio")
    (folder / "empty.flac").write_bytes(b"")
    sf.write(folder / "silent.wav", np.zeros(2 * 32000, np.float32), 32000)
    return folder


@pytest.fixture(scope="module")
def prepared(mixed_corpus, tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("mixed-run")
    argv = base_argv(tiny_model_dir, mixed_corpus, root / "out", root / "cache") + [
        "--instance_prompt",
        "sks",
        "--silence_threshold_db",
        "-60",
        "--chunk_long_tracks",
        "true",
    ]
    report = prepare_main(argv)
    return {"argv": argv, "report": report, "root": root}


def test_mixed_corpus_lists_the_bad_files_and_loses_nothing_else(prepared, mixed_corpus):
    report = prepared["report"]
    assert json.loads((prepared["root"] / "out" / "prepared_data" / "data_report.json").read_text()) == json.loads(
        json.dumps(report)
    )
    files = report["splits"]["train"]["files"]
    assert (files["found"], files["read"], files["skipped"]) == (8, 5, 3)  # the all-zero file: left out at screening
    assert files["reasons"] == {"unreadable": 1, "empty": 1, "silent": 1}
    reasons = {Path(entry["path"]).name: entry["reason"] for entry in files["skipped_files"]}
    assert {name: reason.split(":")[0] for name, reason in reasons.items()} == BAD
    assert "empty: 0 bytes" == reasons["empty.flac"] and "corrupt.wav" in reasons["corrupt.wav"]
    assert reasons["silent.wav"] == "silent: digital silence (no sample above -90 dBFS)"
    # every good file is there, whole: one chunk per track (all shorter than 30 s), as long as the file
    train = datasets.load_from_disk(str(prepared["root"] / "out" / "prepared_data" / "train"))
    lengths = {
        Path(source).name: len(codes[0]) / FRAME_RATE
        for source, codes in zip(train["source"], train["codes"], strict=False)
    }
    assert set(lengths) == set(GOOD) and set(train["offset_seconds"]) == {0.0}
    for name in GOOD:
        assert lengths[name] == pytest.approx(sf.info(str(mixed_corpus / name)).duration, abs=1.5 / FRAME_RATE), name
    kept = report["splits"]["train"]["hours_kept"] * 3600
    assert kept == pytest.approx(sum(lengths.values()))
    assert kept == pytest.approx(sum(seconds for seconds, *_ in GOOD.values()), abs=0.1)
    assert set(train["text"]) == {"sks", "sks, lofi piano"}
    from musicgen_lora.prepare.report import summary

    assert "files: 8 found, 5 read, 3 left out (1 unreadable, 1 empty, 1 silent; each listed in data_report.json)" in (
        summary(report)
    )


def test_strict_stops_at_the_first_bad_file(prepared, capsys):
    with pytest.raises(SystemExit) as exit_info:
        prepare_main(prepared["argv"] + ["--strict", "true"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("error: cannot read audio file ") and "corrupt.wav" in error
    assert "set strict false to skip them" in error


def test_checks_are_cached_per_file(mixed_corpus, tmp_path, monkeypatch):
    paths = [str(mixed_corpus / name) for name in sorted([*GOOD, *BAD])]
    raw = datasets.Dataset.from_dict({"audio": paths, "text": [None] * len(paths)})
    kept, first = screening.screen_split(raw, "songs", "train", tmp_path, False)
    assert len(kept) == 5 and first.found == 8  # corrupt, empty and all-zero files left out
    changed = tmp_path / "changed.wav"
    sf.write(changed, tone(1.0, 100, rate=8000), 8000)
    assert screening.cached_probe(str(changed), tmp_path) is None

    def boom(source):
        raise AssertionError(f"{source} checked again")

    monkeypatch.setattr(screening, "probe_audio", boom)
    kept_again, again = screening.screen_split(raw, "songs", "train", tmp_path, False)
    assert kept_again["audio"] == kept["audio"]
    assert again.skipped == first.skipped
    assert screening.cached_probe(str(changed), tmp_path) is None
    sf.write(changed, tone(2.0, 100, rate=8000), 8000)  # rewritten: its identity (size, time) changed, so checked again
    with pytest.raises(AssertionError, match="changed.wav checked again"):
        screening.cached_probe(str(changed), tmp_path)


@pytest.mark.parametrize(
    ("make", "kind"),
    [
        (lambda p: sf.write(p, np.full(800, np.inf, np.float32), 8000, subtype="FLOAT"), "not finite"),
        (lambda p: sf.write(p, np.zeros(1, np.float32), 8000), "too short"),
        (lambda p: sf.write(p, np.zeros(0, np.float32), 8000), "empty"),
        (lambda p: p.write_bytes(sf_bytes(tone(0.5, 300, rate=8000))[:30]), "unreadable"),  # cut inside the header
    ],
)
def test_probe_finds_each_kind_of_bad_file(tmp_path, make, kind):
    path = tmp_path / "x.wav"
    make(path)
    with pytest.raises(audio.AudioProblem) as problem:
        audio.probe_audio(str(path))
    assert problem.value.kind == kind and "x.wav" in str(problem.value)
    with pytest.raises(audio.AudioProblem) as decoded:  # decoding agrees with the cheap check
        audio.decode_audio({"bytes": path.read_bytes(), "path": str(path)})
    assert decoded.value.kind == kind


def sf_bytes(data: np.ndarray, rate: int = 8000) -> bytes:
    import io

    buffer = io.BytesIO()
    sf.write(buffer, data, rate, format="WAV")
    return buffer.getvalue()


def test_ffmpeg_formats_without_torchcodec_are_skipped_with_the_fix(tmp_path, monkeypatch):
    folder = tmp_path / "songs"
    folder.mkdir()
    sf.write(folder / "good.wav", tone(1.0, 300, rate=8000), 8000)
    (folder / "phone memo.m4a").write_bytes(b"\x00\x00\x00\x18ftypM4A not decodable here")
    monkeypatch.setattr(audio, "_torchcodec_decoder", lambda: (None, "torchcodec unavailable: no FFmpeg"))
    args = parse_config(base_argv(tmp_path, folder, tmp_path / "out", tmp_path / "cache")).data
    raw = load_split(args, "train")
    assert [Path(p).name for p in raw["audio"]] == ["good.wav", "phone memo.m4a"]  # picked up, so it can be reported
    kept, screened = screening.screen_split(raw, str(folder), "train", tmp_path, False)
    assert kept["audio"] == [str(folder / "good.wav")]
    assert screened.skipped == [
        {
            "path": str(folder / "phone memo.m4a"),
            "reason": "unsupported format: .m4a: torchcodec unavailable: no FFmpeg",
        }
    ]
    with pytest.raises(UserError) as strict:
        screening.screen_split(raw, str(folder), "train", tmp_path, True)
    message = str(strict.value)
    assert "phone memo.m4a" in message and "install FFmpeg and torchcodec" in message
    assert "ffmpeg -i 'phone memo.m4a' 'phone memo.flac'" in message
    # only good.wav's result is cached: an unsupported format is not, so once torchcodec works the file is decoded
    assert len(list((tmp_path / "analysis").glob("probe-*.json"))) == 1


def test_ffmpeg_formats_decode_through_torchcodec_when_it_works(tmp_path, monkeypatch):
    """A stand-in torchcodec (decoding WAV content saved as .m4a) checks the dispatch and the sample layout."""
    expected = tone(0.5, 440, rate=22050, channels=2)

    class AudioDecoder:
        def __init__(self, source):
            self.source = source

        def get_all_samples(self):
            import torch

            data, rate = sf.read(
                self.source if isinstance(self.source, str) else __import__("io").BytesIO(self.source),
                dtype="float32",
                always_2d=True,
            )
            return types.SimpleNamespace(data=torch.from_numpy(data.T.copy()), sample_rate=rate)

    decoders = types.ModuleType("torchcodec.decoders")
    decoders.AudioDecoder = AudioDecoder
    monkeypatch.setitem(sys.modules, "torchcodec", types.ModuleType("torchcodec"))
    monkeypatch.setitem(sys.modules, "torchcodec.decoders", decoders)
    audio._torchcodec_decoder.cache_clear()
    try:
        path = tmp_path / "song.m4a"
        path.write_bytes(sf_bytes(expected, 22050))
        decoded, rate = audio.decode_audio(str(path))
        assert rate == 22050 and decoded.shape == (2, len(expected))
        np.testing.assert_allclose(decoded, expected.T, atol=1e-4)
        assert audio.probe_audio(str(path)) == {"seconds": 0.5, "sampling_rate": 22050, "channels": 2}
        assert audio.load_audio({"bytes": path.read_bytes(), "path": "x/song.m4a"}, 32000, 1).shape == (1, 16000)
        (tmp_path / "broken.m4a").write_bytes(b"not audio")
        with pytest.raises(audio.AudioProblem, match="cannot read audio file .*broken.m4a' \\(FFmpeg: "):
            audio.probe_audio(str(tmp_path / "broken.m4a"))
    finally:
        audio._torchcodec_decoder.cache_clear()


@pytest.mark.parametrize("name", ["songs.csv", "data/x.jsonl", "concert.flac", "songs/train.tsv"])
def test_a_missing_file_name_is_not_taken_for_a_hub_id(tmp_path, tiny_model_dir, monkeypatch, name):
    monkeypatch.chdir(tmp_path)

    def no_hub(*args, **kwargs):
        raise AssertionError("asked the Hub")

    monkeypatch.setattr(datasets, "load_dataset", no_hub)
    args = parse_config(base_argv(tiny_model_dir, Path(name), tmp_path / "out", tmp_path / "cache")).data
    expected = re.escape(f"dataset path '{name}' not found (looked in '{tmp_path}'); check the path")
    with pytest.raises(UserError, match=expected):
        load_split(args, "train")


def test_a_file_missing_from_the_metadata_is_skipped_and_not_cached(tmp_path):
    folder = tmp_path / "songs"
    folder.mkdir()
    sf.write(folder / "here.wav", tone(1.0, 300, rate=8000), 8000)
    rows = [{"file_name": "here.wav", "text": "a"}, {"file_name": "gone.wav", "text": "b"}]
    (folder / "metadata.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    args = parse_config(base_argv(tmp_path, folder, tmp_path / "out", tmp_path / "cache")).data
    kept, screened = screening.screen_split(load_split(args, "train"), str(folder), "train", tmp_path, False)
    assert kept["text"] == ["a"]
    assert screened.skipped == [{"path": str(folder / "gone.wav"), "reason": "missing: file not found"}]
    sf.write(folder / "gone.wav", tone(1.0, 300, rate=8000), 8000)  # restored: used on the next run
    assert len(screening.screen_split(load_split(args, "train"), str(folder), "train", tmp_path, False)[0]) == 2


def test_digital_silence_is_left_out_with_its_reason(tmp_path, tiny_model_dir):
    """An all-zero upload, or one with 16-bit dither only, is no training example (before, it was kept with the
    trigger word as its caption, or stopped the run for want of a caption); a quiet real sound is kept."""
    folder = tmp_path / "songs"
    folder.mkdir()
    sf.write(folder / "song.wav", tone(2.0, 330), 32000)
    sf.write(folder / "quiet.wav", tone(2.0, 440, amplitude=0.001), 32000)  # -60 dBFS: music, softly
    (folder / "song.txt").write_text("lofi piano")
    (folder / "quiet.txt").write_text("ambient drone")
    sf.write(folder / "zeros.wav", np.zeros(8 * 32000, np.float32), 32000, subtype="PCM_16")
    dither = np.random.default_rng(0).integers(-1, 2, 3 * 32000).astype(np.int16)
    sf.write(folder / "dither.flac", dither, 32000)
    out = tmp_path / "out"
    report = prepare_main(base_argv(tiny_model_dir, folder, out, tmp_path / "cache"))  # no trigger word: no fallback
    files = report["splits"]["train"]["files"]
    reasons = {Path(entry["path"]).name: entry["reason"] for entry in files["skipped_files"]}
    silent = "silent: digital silence (no sample above -90 dBFS)"
    assert reasons == {"dither.flac": silent, "zeros.wav": silent}
    assert (files["found"], files["read"], files["reasons"]) == (4, 2, {"silent": 2})
    written = json.loads((out / "prepared_data" / "data_report.json").read_text())
    assert written["splits"]["train"]["files"]["skipped_files"] == files["skipped_files"]
    train = datasets.load_from_disk(str(out / "prepared_data" / "train"))
    assert sorted(Path(source).name for source in train["source"]) == ["quiet.wav", "song.wav"]
