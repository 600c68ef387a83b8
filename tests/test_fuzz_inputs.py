"""Property-based fuzzing of what users write by hand: metadata.jsonl and CSV rows, JSON configs, prompts files.

The property, through the real loaders and commands: a one-line error that names the problem and the fix (a
UserError), or success; never another exception (a traceback), and never a changed earlier file. Examples are few
(30-60 per property) so the file runs in about a minute; hypothesis keeps the failing ones it finds in its database
and shrinks them to the smallest input."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import re
import shutil
import tempfile
import typing
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from musicgen_lora.config.arguments import ARGUMENT_GROUPS, DataArguments
from musicgen_lora.config.parsing import parse_config
from musicgen_lora.errors import UserError
from musicgen_lora.evaluate.prompts import read_prompts
from musicgen_lora.prepare import cli as prepare_cli
from musicgen_lora.prepare.sources import load_split

from .bad_input.world import changed_files, check_failure, tree_hashes
from .conftest import base_argv, write_tone

FUZZ = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
FILES = ["a.wav", "b.wav", "./a.wav", "missing.wav", "sub/../b.wav", "", " ", "A.WAV"]

# ------------------------------------------------------------------------------------------------ strategies

# Any JSON value, small; odd numbers included (JSON NaN and Infinity are what Python's json writes and reads).
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
json_values = st.recursive(
    json_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)  # fmt: skip
# Mostly what a user means to write (so the later stages run too), sometimes anything at all.
caption_values = st.one_of(st.text(max_size=30), st.text(max_size=30), st.none(), json_values)
rows = st.fixed_dictionaries(
    {"file_name": st.one_of(st.sampled_from(FILES[:2]), st.sampled_from(FILES), json_scalars)},
    optional={
        "text": caption_values,
        "genre": json_scalars,
        "audio": st.sampled_from(FILES),
        # a reviewed captions.jsonl's flag: true/false/null, and what a hand edit makes of it
        "caption_is_final": st.one_of(st.booleans(), st.sampled_from(["true", "False", "", "yes"]), json_scalars),
    },
)


@st.composite
def jsonl_lines(draw: st.DrawFn) -> str:
    """One metadata.jsonl line: a row, a repeated row, broken JSON, a JSON value that is not an object, or blank."""
    kind = draw(st.sampled_from(["row"] * 6 + ["broken", "not an object", "blank"]))
    if kind == "row":
        return json.dumps(draw(rows), ensure_ascii=draw(st.booleans()))
    if kind == "broken":
        return draw(st.sampled_from(['{"file_name": "a.wav"', "{'file_name': 'a.wav'}", "{file_name: a}", "}", "[1,"]))
    if kind == "not an object":
        return json.dumps(draw(json_values))
    return draw(st.sampled_from(["", "   ", "\t"]))


@st.composite
def metadata_bytes(draw: st.DrawFn) -> bytes:
    """A metadata.jsonl file: a good one (a row per tone) with a few lines replaced, added, repeated or removed; maybe
    a BOM, Windows line ends, or latin-1."""
    lines = [json.dumps({"file_name": "a.wav", "text": "a low tone"}), json.dumps({"file_name": "b.wav", "text": "é"})]
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(lines)))
        edit = draw(st.sampled_from(["replace", "insert", "repeat", "remove"]))
        if edit == "replace" and at < len(lines):
            lines[at] = draw(jsonl_lines())
        elif edit == "insert":
            lines.insert(at, draw(jsonl_lines()))
        elif edit == "repeat" and lines:
            lines.append(lines[at % len(lines)])
        elif edit == "remove" and at < len(lines):
            del lines[at]
    text = draw(st.sampled_from(["\n", "\r\n"])).join(lines) + "\n"
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8", "utf-8-sig", "latin-1"]))
    return text.encode(encoding, errors="replace")


@st.composite
def csv_bytes(draw: st.DrawFn) -> bytes:
    """A CSV of paths and captions as a spreadsheet or a hand writes it: a good table with a few rows replaced by odd
    ones (short, long, a caption with commas left unquoted, empty, repeated), maybe another header or encoding."""
    header = draw(
        st.sampled_from(
            [["file_name", "text"], ["path", "caption"], ["file_name", "text", "genre"],
             ["file_name", "text", "caption_is_final"]]
        )
    )  # fmt: skip
    lines = [["a.wav", "a low tone"], ["b.wav", "lofi, piano"]]
    for _ in range(draw(st.integers(0, 3))):
        words = st.one_of(st.sampled_from(FILES), st.text(max_size=15), st.sampled_from(["true", "FALSE", "no"]))
        fields = draw(st.lists(words, max_size=4))
        at = draw(st.integers(0, len(lines)))
        lines.insert(at, fields) if draw(st.booleans()) or at == len(lines) else lines.__setitem__(at, fields)
    if draw(st.integers(0, 3)) == 0:
        header = draw(st.lists(st.sampled_from(["file_name", "path", "text", "caption", ""]), max_size=3))
    buffer = io.StringIO()
    if draw(st.booleans()):
        csv.writer(buffer, quoting=draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]))).writerows(
            [header, *lines]
        )
    else:  # by hand: no quoting at all, commas inside captions and all
        buffer.write("\n".join(",".join(line) for line in [header, *lines]) + "\n")
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8-sig", "latin-1"]))
    return buffer.getvalue().encode(encoding, errors="replace")


def _values_of(hint: Any) -> st.SearchStrategy:
    """Values of an option's own type, odd ones included (huge, negative, zero, NaN, empty), and None if it takes it."""
    arguments = [a for a in typing.get_args(hint) if a is not type(None)]
    base = arguments[0] if len(arguments) == 1 else hint
    options = {
        bool: st.booleans(),
        int: st.one_of(st.integers(-5, 100), st.sampled_from([0, -1, 2**31, 2**32, 2**63, -(2**70)])),
        float: st.one_of(st.floats(-10, 100), st.sampled_from([0.0, 1e-300, 1e300, math.nan, math.inf, -math.inf])),
        str: st.text(max_size=20),
    }  # fmt: skip
    strategy = options.get(base, st.lists(st.text(max_size=8), max_size=3) if typing.get_origin(base) is list else None)
    strategy = strategy if strategy is not None else json_values
    return st.one_of(strategy, st.none()) if type(None) in typing.get_args(hint) else strategy


HINTS = {name: hint for group in ARGUMENT_GROUPS for name, hint in typing.get_type_hints(group).items()}
# deepspeed is left out: TrainingArguments registers a deepspeed config with transformers for the whole process,
# which would leak into the other tests (a command parses one config per process).
KNOWN = sorted(
    f.name for group in ARGUMENT_GROUPS for f in dataclasses.fields(group) if f.init and f.name != "deepspeed"
)


@st.composite
def config_values(draw: st.DrawFn) -> dict[str, Any]:
    """A JSON config: a valid minimum plus a few known keys, each with a value of its type (odd ones too) or, now and
    then, of any type; maybe an unknown key."""
    values: dict[str, Any] = {"model_name_or_path": "m", "dataset_name": "d", "output_dir": "o"}
    for key in draw(st.lists(st.sampled_from(KNOWN), max_size=3, unique=True)):
        wild = draw(st.integers(0, 4)) == 0
        values[key] = draw(json_values if wild else _values_of(HINTS.get(key, Any)))
    if draw(st.integers(0, 4)) == 0:
        values[draw(st.text(min_size=1, max_size=10))] = draw(json_scalars)
    return values


prompt_items = st.one_of(
    st.text(max_size=30),
    json_scalars,
    st.fixed_dictionaries(
        {}, optional={"text": caption_values, "prompt": caption_values, "bpm": json_scalars, "key": json_values}
    ),
)
prompt_files = st.one_of(
    st.tuples(st.lists(st.text(min_size=1, max_size=20), max_size=3), st.lists(prompt_items, max_size=2)).map(
        lambda parts: ("prompts.json", json.dumps(parts[0] + parts[1]).encode())
    ),  # mostly good prompts, a few odd ones
    st.dictionaries(
        st.sampled_from(["prompts", "test_prompts", "other"]), st.lists(prompt_items, max_size=3), max_size=2
    ).map(lambda d: ("prompts.json", json.dumps(d).encode())),  # fmt: skip
    st.text(max_size=60).map(lambda text: ("prompts.txt", text.encode("utf-8", errors="replace"))),
    st.binary(max_size=40).map(lambda data: (("prompts.json", "prompts.txt")[len(data) % 2], data)),
)

# ------------------------------------------------------------------------------------------------ the property


def one_line_or_success(call: Any, *folders: Path) -> Any:
    """Run ``call()``: it succeeds or raises a UserError whose message is one line naming the problem and the fix;
    nothing that was in ``folders`` before changes. Returns the result (None after a UserError)."""
    before = [tree_hashes(folder) for folder in folders]
    try:
        result = call()
        event("success")
    except UserError as err:
        message = str(err)
        assert message.strip() and "Traceback" not in message
        assert ";" in message, f"the message names no fix: {message!r}"  # problem; fix
        kind = re.sub(r"[0-9]+", "N", re.sub(r"'[^']*'|/\S+", "X", message))[:60]
        event(f"error: {kind}")  # which check answered: hypothesis' statistics show how often each did
        result = None
    for folder, hashes in zip(folders, before, strict=True):
        assert not changed_files(hashes, tree_hashes(folder)), f"an earlier file in {folder} changed"
    return result


@pytest.fixture(scope="module")
def two_tones(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tones")
    write_tone(folder / "a.wav", 2.0, 220.0)
    write_tone(folder / "b.wav", 2.5, 330.0)
    (folder / "sub").mkdir()
    return folder


def _folder(parent: Path, tones: Path) -> Path:
    """A fresh data folder (per example) holding the two tones."""
    folder = Path(tempfile.mkdtemp(dir=parent))
    for name in ("a.wav", "b.wav"):
        shutil.copy(tones / name, folder / name)
    (folder / "sub").mkdir()
    return folder


@FUZZ
@given(metadata=metadata_bytes(), instance_prompt=st.sampled_from([None, "tone"]), as_manifest=st.booleans())
def test_metadata_jsonl(tmp_path, two_tones, metadata, instance_prompt, as_manifest):
    """A folder's metadata.jsonl, or the same lines as an audiocraft manifest (``path`` for ``file_name``)."""
    folder = _folder(tmp_path, two_tones)
    if as_manifest:
        source = folder / "manifest.jsonl"
        source.write_bytes(metadata.replace(b'"file_name"', b'"path"'))
    else:
        source = folder
        (folder / "metadata.jsonl").write_bytes(metadata)
    data_args = DataArguments(dataset_name=str(source), instance_prompt=instance_prompt)
    dataset = one_line_or_success(lambda: load_split(data_args, "train"), folder)
    if dataset is not None:  # every row a path (each once) and a caption that is text or none
        assert len(set(dataset["audio"])) == len(dataset)
        assert all(text is None or isinstance(text, str) for text in dataset["text"])


@FUZZ
@given(table=csv_bytes(), as_metadata=st.booleans())
def test_csv_rows(tmp_path, two_tones, table, as_metadata):
    folder = _folder(tmp_path, two_tones)
    target = folder / ("metadata.csv" if as_metadata else "list.csv")
    target.write_bytes(table)
    data_args = DataArguments(dataset_name=str(folder if as_metadata else target), instance_prompt="tone")
    dataset = one_line_or_success(lambda: load_split(data_args, "train"), folder)
    if dataset is not None:
        assert all(isinstance(path, str) and path for path in dataset["audio"])


@settings(FUZZ, max_examples=60)
@given(values=config_values(), as_text=st.booleans())
def test_json_configs(tmp_path, values, as_text):
    path = Path(tempfile.mkdtemp(dir=tmp_path)) / "config.json"
    text = json.dumps(values)  # NaN and Infinity written as JSON's extensions, as Python reads them
    path.write_text(text if not as_text else text.replace('"', "'", 1), encoding="utf-8")  # as_text: a typo
    one_line_or_success(lambda: parse_config([str(path)]), path.parent)


@settings(FUZZ, max_examples=60)
@given(prompts=prompt_files, bom=st.booleans())
def test_prompts_files(tmp_path, prompts, bom):
    name, content = prompts
    path = Path(tempfile.mkdtemp(dir=tmp_path)) / name
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + content)
    result = one_line_or_success(lambda: read_prompts(path), path.parent)
    if result is not None:
        assert result and all(isinstance(p.text, str) and p.text.strip() for p in result)


@settings(FUZZ, max_examples=15)
@given(metadata=metadata_bytes())
def test_prepare_command_on_hand_written_metadata(tmp_path, two_tones, metadata, tiny_model_dir, data_cache_dir,
                                                  capsys):  # fmt: skip
    """The whole preparation command, in-process: exit 2 with one error line, or a report; files untouched."""
    folder = _folder(tmp_path, two_tones)
    (folder / "metadata.jsonl").write_bytes(metadata)
    out = folder.with_name(folder.name + "-out")
    argv = base_argv(tiny_model_dir, folder, out, data_cache_dir) + ["--instance_prompt", "tone"]
    before = tree_hashes(folder)
    capsys.readouterr()
    try:
        report = prepare_cli.main(argv)
    except SystemExit as exit_:
        captured = capsys.readouterr()
        event("error: " + check_failure(exit_.code, captured.out, captured.err, 2, r"; ").split("'")[0])
    else:
        event("success")
        assert report["splits"]["train"]["tracks"] >= 1
    assert not changed_files(before, tree_hashes(folder))
