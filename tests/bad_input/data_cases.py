"""Bad training data, through training (``finetune_musicgen.py``) and preparation (``python -m
musicgen_lora.prepare``): hand-written metadata, CSVs, manifests, captions and prompts, and audio that cannot be used.
Every case's data folder is its own, and must come out of it byte-identical, as must the earlier run."""

from __future__ import annotations

import gzip
import json
from typing import Any

import numpy as np
import soundfile as sf

from ..conftest import RATE
from .world import Case, World

TRAIN, PREPARE = "train", "prepare"
ROW_A = {"file_name": "a.wav", "text": "a low tone"}
ROW_B = {"file_name": "b.wav", "text": "a higher tone"}


def jsonl(*rows: Any) -> str:
    """metadata.jsonl text: dicts and lists as JSON, strings as they are (for broken lines)."""
    return "".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows)


def folder(metadata: str | bytes | None, name: str = "metadata.jsonl", files: int = 2) -> Any:
    """Training on a folder of ``files`` tones with ``metadata`` in ``name``."""

    def argv(w: World) -> list[str]:
        data = w.songs(files=files)
        if metadata is not None:
            w.write(f"songs/{name}", metadata)
        return w.train(data=data)

    return argv


def prepare(*extra: str, data: Any = None) -> Any:
    """``prepare`` with the quick training words (its output folder: the earlier run, whose files must not change)."""
    return lambda w: w.train(*extra, data=data(w) if data else None)


def file_source(name: str, content: str | bytes, *extra: str) -> Any:
    """Training on a single-file source (a CSV, a manifest) next to two tones."""

    def argv(w: World) -> list[str]:
        w.songs()
        return w.train(*extra, data=w.write(f"songs/{name}", content))

    return argv


def audio_folder(write: Any, *extra: str) -> Any:
    """Training on a folder holding one audio file ``a.wav`` written by ``write(path)`` (+ ``b.wav``, good, when
    ``extra`` asks for strict)."""

    def argv(w: World) -> list[str]:
        folder = w.path("songs")
        folder.mkdir()
        write(folder / "a.wav")
        (folder / "a.txt").write_text("a caption")
        if "--strict" in extra:
            w.wav("songs/b.wav", 2.0)
        return w.train(*extra, data=folder)

    return argv


def _unreadable_audio(w: World) -> list[str]:
    data = w.songs(files=1)
    w.deny_read(data / "a.wav")
    return w.train(data=data)


def _unreadable_metadata(w: World) -> list[str]:
    data = w.songs(metadata=jsonl(ROW_A, ROW_B))
    w.deny_read(data / "metadata.jsonl")
    return w.train(data=data)


def _unreadable_caption(w: World) -> list[str]:
    data = w.songs(files=1)
    w.deny_read(w.write("songs/a.txt", "a caption"))
    return w.train(data=data)


def _sidecar(content: bytes) -> Any:
    def argv(w: World) -> list[str]:
        w.songs()
        w.write("songs/a.json", content)
        return w.train(data=w.write("songs/manifest.jsonl", jsonl({"path": "a.wav"}, {"path": "b.wav"})))

    return argv


def _interrupt_encoding(w: World) -> None:
    import musicgen_lora.prepare.pipeline as pipeline

    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    w.monkeypatch.setattr(pipeline, "encode_dataset", interrupted)


LATIN1_ROW = '{"file_name": "a.wav", "text": "caf\xe9"}\n'.encode("latin-1")


DATA_CASES: dict[str, Case] = {
    # ---------------------------------------------------------------- paths
    "dataset path missing": Case(
        TRAIN,
        lambda w: w.train("--dataset_name", str(w.path("no-such-folder"))),
        r"dataset path .*no-such-folder' not found",
    ),
    "dataset folder empty": Case(TRAIN, lambda w: w.train(data=w.songs("empty", files=0)), r"holds no audio files"),
    "dataset folder of text files only": Case(
        TRAIN, lambda w: w.train(data=w.write("notes/a.txt", "hello").parent), r"holds no audio files"
    ),
    "dataset a file of unknown kind": Case(
        TRAIN, lambda w: w.train(data=w.write("songs.xyz", "x")), r"dataset_name .*songs.xyz' is a file of unknown kind"
    ),
    "dataset a Hub id while offline": Case(
        TRAIN,
        lambda w: w.train("--dataset_name", "someone/no-such-dataset"),
        r"cannot load dataset 'someone/no-such-dataset'",
    ),
    "eval split folder missing": Case(
        TRAIN,
        lambda w: w.train("--eval_split_name", "validation"),
        r"split 'validation' requested but .* has no subfolder 'validation'",
    ),
    # ---------------------------------------------------------------- metadata.jsonl
    "metadata not UTF-8": Case(TRAIN, folder(LATIN1_ROW), r"metadata file .* is not UTF-8 text \(byte 0xe9"),
    "metadata BOM read, line 2 named": Case(
        TRAIN, folder("\ufeff" + jsonl(ROW_A, "{oops")), r"metadata.jsonl line 2 is not valid JSON"
    ),
    "metadata line not JSON": Case(
        TRAIN,
        folder(jsonl(ROW_A, "{'file_name': 'b.wav'}")),
        r"metadata.jsonl line 2 is not valid JSON .*; fix that line",
    ),
    "metadata line is a list": Case(TRAIN, folder(jsonl(ROW_A, ["b.wav", "x"])), r"line 2 is not a JSON object"),
    "metadata line is a number": Case(TRAIN, folder(jsonl(ROW_A, "42")), r"line 2 is not a JSON object"),
    "metadata line is a string": Case(TRAIN, folder(jsonl('"b.wav"', ROW_A)), r"line 1 is not a JSON object"),
    "metadata line is null": Case(TRAIN, folder(jsonl(ROW_A, "null")), r"line 2 is not a JSON object"),
    "metadata row without file_name": Case(
        TRAIN, folder(jsonl(ROW_A, {"text": "x"})), r"line 2: 'file_name' is missing; give each row"
    ),
    "metadata file_name a number": Case(
        TRAIN, folder(jsonl(ROW_A, {"file_name": 7, "text": "x"})), r"line 2: 'file_name' is 7; give each row"
    ),
    "metadata file_name a list": Case(
        TRAIN, folder(jsonl({"file_name": ["a.wav"], "text": "x"})), r"line 1: 'file_name' is \[\"a.wav\"\]"
    ),
    "metadata file_name null": Case(
        TRAIN, folder(jsonl(ROW_A, {"file_name": None, "text": "x"})), r"line 2: 'file_name' is missing"
    ),
    "metadata file_name empty": Case(
        TRAIN, folder(jsonl(ROW_A, {"file_name": "  ", "text": "x"})), r"line 2: 'file_name' is \" \"; give each row"
    ),
    "metadata caption a list": Case(
        TRAIN,
        folder(jsonl({**ROW_A, "text": ["lofi", "piano"]})),
        r"line 1: the caption is \[\"lofi\", \"piano\"\], not text",
    ),
    "metadata caption an object": Case(
        TRAIN,
        folder(jsonl({**ROW_A, "text": {"genre": "lofi"}})),
        r"line 1: the caption is \{\"genre\": \"lofi\"\}, not text",
    ),
    "metadata caption a number": Case(
        TRAIN, folder(jsonl(ROW_A, {**ROW_B, "text": 3.5})), r"line 2: the caption is 3.5, not text"
    ),
    "metadata caption true": Case(TRAIN, folder(jsonl({**ROW_A, "text": True})), r"the caption is true, not text"),
    "metadata duplicate rows, other captions": Case(
        TRAIN,
        folder(jsonl(ROW_A, ROW_B, {**ROW_A, "text": "other"})),
        r"lists 'a.wav' twice \(lines 1 and 3\) with different captions",
    ),
    "metadata duplicate path spelled differently": Case(
        TRAIN, folder(jsonl(ROW_A, ROW_B, {**ROW_A, "file_name": " a.wav ", "text": "other"})), r"lists .* twice"
    ),
    "metadata empty": Case(TRAIN, folder(""), r"the metadata file .* has no rows"),
    "metadata blank lines only": Case(TRAIN, folder("\n  \n\n"), r"the metadata file .* has no rows"),
    "metadata without a caption column": Case(
        TRAIN,
        folder(jsonl({"file_name": "a.wav", "caption": "x"})),
        r"caption column 'text' not found .*columns: caption, file_name",
    ),
    "metadata without a path column": Case(
        TRAIN,
        folder(jsonl({"path": "a.wav", "text": "x"})),
        r"no 'file_name' or 'audio' column \(columns: path, text\)",
    ),
    "metadata names a missing file only": Case(
        TRAIN,
        folder(jsonl({"file_name": "gone.wav", "text": "x"}), files=0),
        r"all 1 audio file\(s\) .* were skipped \(1 missing",
    ),
    "metadata unreadable": Case(TRAIN, _unreadable_metadata, r"metadata file .* cannot be read: permission denied"),
    "metadata names a folder": Case(
        TRAIN,
        lambda w: (
            w.path("songs/sub.wav").mkdir(parents=True),
            folder(jsonl({"file_name": "sub.wav", "text": "x"}), files=0)(w),
        )[1],
        r"were skipped \(1 unreadable; .*sub.wav' \(a folder, not an audio file\)",
    ),
    "conditional column missing": Case(
        TRAIN,
        lambda w: folder(jsonl(ROW_A, ROW_B))(w) + ["--conditional_audio_column_name", "melody"],
        r"conditional_audio_column_name is set but .* is not a melody model",
    ),
    # ---------------------------------------------------------------- metadata.csv in a folder
    "metadata.csv not UTF-8": Case(
        TRAIN, folder(b"file_name,text\na.wav,caf\xe9\n", "metadata.csv"), r"metadata file .* is not UTF-8"
    ),
    "metadata.csv row with extra fields": Case(
        TRAIN,
        folder("file_name,text\na.wav,one,two\nb.wav,x\n", "metadata.csv"),
        r"metadata.csv line 2 has 3 fields but the header has 2; put values that hold commas",
    ),
    "metadata.csv header only": Case(TRAIN, folder("file_name,text\n", "metadata.csv"), r"has no rows"),
    "metadata.csv short row": Case(
        TRAIN,
        folder("file_name,text\na.wav,x\nb.wav\n", "metadata.csv"),
        r"1 clip\(s\) have no caption \(first: .*b.wav'\)",
    ),
    "metadata.csv row without path": Case(
        TRAIN, folder("file_name,text\na.wav,x\n,y\n", "metadata.csv"), r"line 3: 'file_name' is \"\""
    ),
    # ---------------------------------------------------------------- .txt captions and audio
    ".txt caption not UTF-8": Case(
        TRAIN,
        lambda w: (w.write("songs/a.txt", "caf\xe9".encode("latin-1")), w.train(data=w.songs()))[1],
        r"caption file .*a.txt' is not UTF-8 text \(byte 0xe9",
    ),
    ".txt caption unreadable": Case(TRAIN, _unreadable_caption, r"caption file .* cannot be read: permission denied"),
    "audio unreadable (permission)": Case(
        TRAIN, _unreadable_audio, r"were skipped \(1 permission denied; .*permission denied"
    ),
    "corrupt audio": Case(
        TRAIN,
        audio_folder(lambda p: p.write_bytes(b"RIFFjunk")),
        r"all 1 audio file\(s\) of .*songs' \(train split\) were skipped \(1 unreadable",
    ),
    "empty audio": Case(
        TRAIN,
        audio_folder(lambda p: sf.write(p, np.zeros(0), RATE)),
        r"were skipped \(1 empty; .*a.wav' is empty \(0 samples\)",
    ),
    "zero-byte audio": Case(TRAIN, audio_folder(lambda p: p.write_bytes(b"")), r"were skipped \(1 empty"),
    "NaN audio": Case(
        TRAIN,
        audio_folder(lambda p: sf.write(p, np.full(3200, np.nan, np.float32), RATE, subtype="FLOAT")),
        r"were skipped \(1 not finite; .*a.wav' contains NaN",
    ),
    "one-sample audio": Case(
        TRAIN,
        audio_folder(lambda p: sf.write(p, np.zeros(1), RATE)),
        r"were skipped \(1 too short; .*holds a single sample",
    ),
    "silent audio shorter than min_duration": Case(
        TRAIN,
        audio_folder(lambda p: sf.write(p, np.zeros(3200), RATE)),
        r"(too short|shorter|no clip|skipped|min_duration)",
    ),
    "bad audio with strict": Case(
        TRAIN,
        audio_folder(lambda p: p.write_bytes(b"RIFFjunk"), "--strict", "true"),
        r"cannot read audio file .*a.wav' .*\(strict is on: .*set strict false",
    ),
    "audio named .m4a that is not": Case(
        TRAIN, lambda w: (w.write("songs/a.m4a", b"not audio"), w.train(data=w.path("songs")))[1], r"were skipped"
    ),
    # ---------------------------------------------------------------- a CSV as dataset_name
    "CSV not UTF-8": Case(
        TRAIN, file_source("list.csv", b"file_name,text\na.wav,caf\xe9\n"), r"CSV file .* is not UTF-8"
    ),
    "CSV without a path column": Case(
        TRAIN, file_source("list.csv", "name,text\na.wav,x\n"), r"has no path column \(columns: name, text\)"
    ),
    "CSV without a caption column": Case(
        TRAIN, file_source("list.csv", "file_name,label\na.wav,x\n"), r"caption column 'text' not found in .*list.csv"
    ),
    "CSV header only": Case(TRAIN, file_source("list.csv", "file_name,text\n"), r"has no rows"),
    "CSV empty": Case(TRAIN, file_source("list.csv", ""), r"has no rows"),
    "CSV row without a path": Case(
        TRAIN, file_source("list.csv", "file_name,text\na.wav,x\n,y\n"), r"list.csv row 3 has no audio path"
    ),
    "CSV row with extra fields": Case(
        TRAIN,
        file_source("list.csv", "file_name,text\na.wav,x,y\n"),
        r"list.csv line 2 has 3 fields but the header has 2",
    ),
    "CSV duplicate rows": Case(
        TRAIN,
        file_source("list.csv", "file_name,text\na.wav,x\nb.wav,y\na.wav,z\n"),
        r"list.csv lists 'a.wav' twice \(lines 2 and 4\) with different captions",
    ),
    "TSV without a path column": Case(TRAIN, file_source("list.tsv", "name\ttext\na.wav\tx\n"), r"has no path column"),
    "TSV row with extra fields": Case(
        TRAIN, file_source("list.tsv", "path\ttext\na.wav\tx\ty\n"), r"line 2 has 3 fields .* values that hold tabs"
    ),
    # ---------------------------------------------------------------- an audiocraft manifest as dataset_name
    "manifest not UTF-8": Case(
        TRAIN,
        file_source("m.jsonl", '{"path": "a.wav", "text": "caf\xe9"}\n'.encode("latin-1")),
        r"manifest .* is not UTF-8",
    ),
    "manifest line not JSON": Case(
        TRAIN, file_source("m.jsonl", jsonl({"path": "a.wav"}, "{path: b.wav}")), r"m.jsonl line 2 is not valid JSON"
    ),
    "manifest line not an object": Case(TRAIN, file_source("m.jsonl", jsonl(["a.wav"])), r"line 1 has no 'path' field"),
    "manifest without path": Case(TRAIN, file_source("m.jsonl", jsonl({"file": "a.wav"})), r"line 1 has no 'path'"),
    "manifest path a number": Case(
        TRAIN, file_source("m.jsonl", jsonl({"path": 3})), r"m.jsonl row 1 has no audio path"
    ),
    "manifest caption a number": Case(
        TRAIN, file_source("m.jsonl", jsonl({"path": "a.wav", "text": 5})), r"line 1: the caption is 5, not text"
    ),
    "manifest empty": Case(TRAIN, file_source("m.jsonl", "\n"), r"manifest .* has no entries"),
    "manifest duplicate rows": Case(
        TRAIN,
        file_source("m.jsonl", jsonl({"path": "a.wav", "text": "x"}, {"path": "a.wav", "text": "y"})),
        r"lists 'a.wav' twice",
    ),
    "manifest gz corrupt": Case(
        TRAIN, file_source("m.jsonl.gz", b"\x1f\x8b not gzip"), r"manifest .* cannot be read as gzipped UTF-8 text"
    ),
    "manifest gz not UTF-8": Case(
        TRAIN,
        file_source("m.jsonl.gz", gzip.compress(b'{"path": "a.wav", "text": "\xe9"}')),
        r"manifest .* cannot be read as gzipped UTF-8 text",
    ),
    "sidecar not JSON": Case(TRAIN, _sidecar(b"{oops"), r"sidecar metadata .*a.json' is not valid JSON"),
    "sidecar not UTF-8": Case(TRAIN, _sidecar(b'{"description": "caf\xe9"}'), r"sidecar metadata .* is not UTF-8"),
    "sidecar description a number": Case(
        TRAIN, _sidecar(b'{"description": 5}'), r"1 clip\(s\) have no caption \(first: .*b.wav'\)"
    ),
    "single audio file, caption not UTF-8": Case(
        TRAIN,
        lambda w: (w.songs(files=1), w.write("songs/a.txt", b"\xff\xfe"), w.train(data=w.path("songs/a.wav")))[2],
        r"caption file .*a.txt' is not UTF-8",
    ),
    # ---------------------------------------------------------------- the same through prepare
    "prepare: no arguments": Case(PREPARE, lambda w: [], r"model_name_or_path is not set"),
    "prepare: unknown flag": Case(PREPARE, prepare("--bogus", "1"), r"unknown option '--bogus'"),
    "prepare: config missing": Case(PREPARE, lambda w: [str(w.path("none.json"))], r"config file .* not found"),
    "prepare: metadata not UTF-8": Case(PREPARE, folder(LATIN1_ROW), r"is not UTF-8"),
    "prepare: metadata caption a list": Case(PREPARE, folder(jsonl({**ROW_A, "text": ["x"]})), r"not text"),
    "prepare: metadata duplicate rows": Case(PREPARE, folder(jsonl(ROW_A, {**ROW_A, "text": "y"})), r"twice"),
    "prepare: CSV extra fields": Case(PREPARE, file_source("list.csv", "file_name,text\na.wav,x,y\n"), r"3 fields"),
    "prepare: dataset missing": Case(PREPARE, prepare("--dataset_name", "./nowhere"), r"dataset path .* not found"),
    "prepare: output_dir is a file": Case(PREPARE, lambda w: w.train(out=w.write("a-file", "x")), r"output_dir .*file"),
    "prepare: data_cache_dir is a file": Case(
        PREPARE, lambda w: w.train("--data_cache_dir", str(w.write("c", "x"))), r"data_cache_dir .* is a file"
    ),
    "prepare: output_dir is the data folder": Case(PREPARE, lambda w: w.train(data=w.corpus, out=w.corpus), r"overlap"),
    "prepare: numbers": Case(PREPARE, prepare("--max_duration_in_seconds", "nan"), r"must be a finite number"),
    "prepare: Ctrl-C while encoding": Case(
        PREPARE,
        lambda w: (_interrupt_encoding(w), w.train("--instance_prompt", "tone", data=w.songs(), out=w.path("p")))[1],
        r"interrupted; nothing finished was lost",
        code=130,
    ),
    "prepare: corrupt audio only": Case(PREPARE, audio_folder(lambda p: p.write_bytes(b"junk!")), r"were skipped"),
}
