"""The studio's project folder: the config written from the form (and never a config training would refuse), presets,
memory profiles and the command line, rename, delete and the run history, caption edits and exclusions in every
layout, uploads."""

from __future__ import annotations

import csv
import json
import shlex
import shutil
import sys
import zipfile
from dataclasses import asdict
from dataclasses import replace as dataclass_replace
from pathlib import Path

import pandas as pd
import pytest

from musicgen_lora.config.parsing import parse_config
from musicgen_lora.errors import UserError
from musicgen_lora.studio import backend, handlers
from musicgen_lora.studio.dataset_files import (
    add_uploads,
    exclude_file,
    excluded_files,
    include_file,
    save_captions,
)
from musicgen_lora.studio.handlers import Studio
from musicgen_lora.studio.presets import MEMORY_PROFILES, apply_profile, command_lines, load_preset, save_preset
from musicgen_lora.studio.project import (
    Project,
    build_config,
    history_runs,
    list_projects,
    rename_project,
    set_run_aside,
    write_config,
)

from .conftest import tiny_form


@pytest.fixture
def project(tmp_path) -> Project:
    return Project.open(tmp_path / "projects", "songs")


def test_a_project_folder_is_made_by_its_first_write(project, tiny_model_dir, corpus_dir):
    assert not project.exists and list_projects(project.root) == []  # a name typed and abandoned leaves nothing
    write_config(project, build_config(project, tiny_form(tiny_model_dir, corpus_dir))[0])
    assert list_projects(project.root) == ["songs"]


def test_the_config_from_the_form_parses_as_training_parses_it(project, tiny_model_dir, corpus_dir):
    form = tiny_form(tiny_model_dir, corpus_dir, precision="bf16", trigger_word="sks", gradient_checkpointing=True)
    config, notices = build_config(project, form)
    data = backend.check_config(write_config(project, config))  # the real parse_config, as the page runs it
    parsed = parse_config([str(project.config_path)])
    assert notices == [] and data == parsed.data
    assert parsed.model.model_name_or_path == str(tiny_model_dir) and data.dataset_name == str(corpus_dir.resolve())
    assert data.instance_prompt == "sks" and parsed.lora.lora_r == 4 and parsed.lora.lora_alpha == 8  # alpha = 2 x r
    assert parsed.training.sample_prompts == ["lofi hip hop, piano"] and data.max_train_samples == 4  # the JSON box
    assert config["max_steps"] == 6 and config["bf16"] is True and config["fp16"] is False
    assert config["gradient_checkpointing"] is True and config["report_to"] == "none"
    assert config["output_dir"] == str(project.run_dir) and config["data_cache_dir"] == str(project.cache_dir)


def test_form_fields_replace_the_json_and_say_so(project, tiny_model_dir, corpus_dir):
    form = tiny_form(tiny_model_dir, corpus_dir, extra_json='{"lora_r": 64, "lora_alpha": 5, "lora_dropout": 0.2}')
    config, notices = build_config(project, form)
    assert config["lora_r"] == 4 and config["lora_alpha"] == 5 and config["lora_dropout"] == 0.2
    assert notices == ["the form's value of 'lora_r' replaces the JSON's"]


def test_the_form_round_trips_through_the_saved_config(project, tiny_model_dir, corpus_dir):
    studio = Studio(project.root)
    form = tiny_form(tiny_model_dir, corpus_dir, precision="fp16", trigger_word="sks style", steps=0, epochs=2.0)
    form.dataset, form.tracker, form.accumulation = str(Path(form.dataset).resolve()), "tensorboard", 4
    config, _ = build_config(project, form)
    again = studio.form_from_config(json.loads(write_config(project, config).read_text()))
    assert asdict(again) | {"extra_json": None} == asdict(form) | {"extra_json": None}
    assert json.loads(again.extra_json) == json.loads(form.extra_json)


def test_paths_inside_the_projects_folder_are_shown_and_typed_relative_to_it(project, corpus_dir, tiny_model_dir):
    data = project.root / "songs" / "data"
    shutil.copytree(corpus_dir, data)
    shutil.copytree(tiny_model_dir, project.root / "models" / "tiny")
    form = tiny_form("models/tiny", "songs/data")
    config, _ = build_config(project, form)
    assert config["dataset_name"] == str(data) and config["model_name_or_path"] == str(project.root / "models/tiny")
    shown = Studio(project.root).form_from_config(config)
    assert (shown.base_model, shown.dataset) == ("models/tiny", "songs/data")  # no machine's absolute path


def test_a_config_training_refuses_is_never_written(project, tiny_model_dir, corpus_dir):
    """A rejected option at Start used to be saved, and the project then reopened with another project's form."""
    good, _ = build_config(project, tiny_form(tiny_model_dir, corpus_dir))
    write_config(project, good)
    before = project.config_path.read_text()
    for extra in ('{"lora_dropout": "lots"}', '{"lora_dropou": 0.1}'):
        bad, _ = build_config(project, tiny_form(tiny_model_dir, corpus_dir, extra_json=extra))
        with pytest.raises(UserError) as refused:
            write_config(project, bad)
        assert "lora_dropou" in str(refused.value) and ".json" not in str(refused.value).split("lora_dropou")[0]
    assert project.config_path.read_text() == before and sorted(p.name for p in project.folder.iterdir()) == [
        "config.json"
    ]
    fresh = Project.open(project.root, "fresh")
    bad, _ = build_config(fresh, tiny_form(tiny_model_dir, corpus_dir, extra_json='{"lora_dropout": "lots"}'))
    with pytest.raises(UserError):
        write_config(fresh, bad)
    assert not fresh.config_path.exists()
    defaults = Studio(project.root).defaults("fresh")  # its own empty form, not the demo's
    assert (defaults.base_model, defaults.steps) == ("facebook/musicgen-small", 0)


def test_presets_profiles_and_the_command_line(project, tiny_model_dir, corpus_dir):
    form = tiny_form(tiny_model_dir, corpus_dir, trigger_word="sks")
    save_preset(project.root, "quick", form)
    other = tiny_form(tiny_model_dir, project.root, steps=99, rank=32)
    loaded = load_preset(project.root, "quick", other)
    assert loaded.steps == form.steps and loaded.rank == form.rank and loaded.dataset == str(project.root)
    with pytest.raises(UserError, match="no preset called 'nope'"):
        load_preset(project.root, "nope", form)
    for name, profile in MEMORY_PROFILES.items():  # every profile makes a config training accepts
        applied = apply_profile(form, name)
        assert (applied.batch_size, applied.precision) == (profile.batch_size, profile.precision)
        config, _ = build_config(project, dataclass_replace(applied, base_model=str(tiny_model_dir)))
        backend.check_config(write_config(project, config))
    config, _ = build_config(project, form)
    exact, flags = command_lines(project.config_path, config)
    assert exact == f"python -m musicgen_lora.train {project.config_path}"
    words = shlex.split(flags)
    assert words[:2] == ["musicgen-lora", "train"]
    from_flags = parse_config(words[2:])
    from_file = parse_config([str(write_config(project, config))])
    assert from_flags.data == from_file.data and from_flags.lora == from_file.lora
    assert from_flags.training.to_dict() == from_file.training.to_dict()


def test_rename_moves_the_project_and_the_paths_its_files_hold(tmp_path, tiny_model_dir, corpus_dir):
    studio = Studio(tmp_path / "projects")
    project = studio.project("songs")
    write_config(project, build_config(project, tiny_form(tiny_model_dir, corpus_dir))[0])
    (project.run_dir / "checkpoint-2").mkdir(parents=True)
    (project.run_dir / backend.RESOLVED_CONFIG_NAME).write_text(json.dumps({"output_dir": str(project.run_dir)}))
    renamed = rename_project(studio.root, "songs", "jazz")
    assert not project.folder.exists() and list_projects(studio.root) == ["jazz"]
    assert json.loads(renamed.config_path.read_text())["output_dir"] == str(renamed.run_dir)
    assert json.loads((renamed.run_dir / backend.RESOLVED_CONFIG_NAME).read_text())["output_dir"] == str(
        renamed.run_dir
    )
    studio.project("other").folder.mkdir()
    with pytest.raises(UserError, match="exists already"):
        rename_project(studio.root, "jazz", "other")
    assert studio.rename("jazz", "bad name")[0].startswith("**Error:** new name 'bad name' is not allowed")
    message, shown = studio.delete("jazz")
    assert message == "Deleted project 'jazz' and its files." and not renamed.folder.exists() and shown == "other"


def test_start_over_keeps_the_earlier_run_in_the_history(project):
    run = project.run_dir
    (run / "prepared_data").mkdir(parents=True)
    (run / "checkpoint-4").mkdir()
    (run / "adapter_model.safetensors").write_bytes(b"x")
    with pytest.raises(UserError, match="name for the earlier run 'first try' is not allowed"):
        set_run_aside(project, "first try")
    assert set_run_aside(project, "first-try") == "first-try"
    kept = project.history_dir / "first-try"
    assert sorted(p.name for p in kept.iterdir()) == ["adapter_model.safetensors", "checkpoint-4"]
    assert [p.name for p in run.iterdir()] == ["prepared_data"]  # the next run reuses the prepared data
    assert set_run_aside(project) is None  # nothing left to set aside
    assert history_runs(project) == {"first-try": kept}
    (run / "adapter_model.safetensors").write_bytes(b"y")
    with pytest.raises(UserError, match="already holds 'first-try'"):
        set_run_aside(project, "first-try")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"extra_json": '{"lora_dropout": 0.1,}'}, "not valid JSON"),
        ({"extra_json": "[1, 2]"}, "must be an object"),
        ({"extra_json": '{"output_dir": "/elsewhere"}'}, "studio sets itself"),
        ({"dataset": "/no/such/folder"}, "audio folder '/no/such/folder' not found"),
        ({"dataset": "  "}, "no audio folder"),
        ({"base_model": ""}, "base model is empty"),
        ({"rank": 2.5}, "LoRA rank must be a whole number"),
        ({"learning_rate": None}, "learning rate is empty"),
        ({"batch_size": 0}, "batch size must be at least 1"),
        ({"steps": -5}, "steps must be at least 0, got -5"),
        ({"sample_seconds": 0}, "sample length must be more than 0"),
        ({"clip_seconds": 0}, "clip length must be more than 0"),
        ({"tracker": "mlflow"}, "the tracker must be one of none, tensorboard, wandb"),
        ({"precision": "int4"}, "precision must be one of"),
    ],
)
def test_bad_form_values_are_one_line_errors(project, tiny_model_dir, corpus_dir, changes, message):
    with pytest.raises(UserError, match=message) as caught:
        build_config(project, tiny_form(tiny_model_dir, corpus_dir, **changes))
    assert "\n" not in str(caught.value)


def test_a_value_training_refuses_is_caught_before_any_process_starts(project, tiny_model_dir, corpus_dir):
    config, _ = build_config(project, tiny_form(tiny_model_dir, corpus_dir, extra_json='{"lora_dropout": 1.5}'))
    with pytest.raises(UserError, match="lora_dropout"):
        write_config(project, config)


def test_project_names_cannot_leave_the_projects_folder(tmp_path):
    for name in ("../outside", "a/b", "", ".hidden"):
        with pytest.raises(UserError, match="project name"):
            Project.open(tmp_path, name)


# ------------------------------------------------------------------------------------------- caption edits


def _tracks(folder: Path, text_column: str = "text") -> dict[str, str | None]:
    """What preparation will read: each file's own caption, through the package's own loader."""
    args = backend.check_config(_config_for(folder, text_column))
    return {Path(t["path"]).name: t["caption"] for t in backend.list_tracks(args)}


def _config_for(folder: Path, text_column: str) -> Path:
    path = folder.parent / f"{folder.name}-config.json"
    path.write_text(
        json.dumps(
            {
                "model_name_or_path": "m",
                "dataset_name": str(folder),
                "output_dir": str(folder.parent / "out"),
                "text_column_name": text_column,
                "instance_prompt": "sks",
            }
        )
    )
    return path


def test_edits_go_into_metadata_jsonl_and_keep_the_other_fields(corpus_dir, tmp_path):
    folder = tmp_path / "corpus"
    shutil.copytree(corpus_dir, folder)
    before = [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines()]
    changed = save_captions(
        folder, {str(folder / "clip_001.wav"): "new\ncaption ", str(folder / "clip_002.wav"): before[2]["text"]}
    )
    after = [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines()]
    assert changed == 1
    assert after[1] == {**before[1], "text": "new caption"} and after[:1] + after[2:] == before[:1] + before[2:]
    assert _tracks(folder)["clip_001.wav"] == "new caption"


def test_edits_go_into_metadata_csv_with_its_own_caption_column(corpus_dir, tmp_path):
    folder = tmp_path / "songs"
    (folder / "audio").mkdir(parents=True)
    for name in ("clip_000.wav", "clip_001.wav"):
        shutil.copy(corpus_dir / name, folder / "audio" / name)
    with (folder / "metadata.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows(
            [["file_name", "caption", "bpm"], ["audio/clip_000.wav", "old", "90"], ["audio/clip_001.wav", "keep", "80"]]
        )
    assert save_captions(folder, {str(folder / "audio" / "clip_000.wav"): "fresh, piano"}, text_column="caption") == 1
    rows = list(csv.DictReader((folder / "metadata.csv").open(newline="")))
    assert rows == [
        {"file_name": "audio/clip_000.wav", "caption": "fresh, piano", "bpm": "90"},
        {"file_name": "audio/clip_001.wav", "caption": "keep", "bpm": "80"},
    ]
    assert _tracks(folder, "caption") == {"clip_000.wav": "fresh, piano", "clip_001.wav": "keep"}


def test_edits_of_a_folder_without_metadata_go_into_txt_files(corpus_dir, tmp_path):
    folder = tmp_path / "plain"
    folder.mkdir()
    for name in ("clip_000.wav", "clip_001.wav"):
        shutil.copy(corpus_dir / name, folder / name)
    (folder / "clip_001.txt").write_text("had one\n")
    assert _tracks(folder) == {"clip_000.wav": None, "clip_001.wav": "had one"}
    assert save_captions(folder, {str(folder / "clip_000.wav"): "techno", str(folder / "clip_001.wav"): "had one"}) == 1
    assert _tracks(folder) == {"clip_000.wav": "techno", "clip_001.wav": "had one"}


@pytest.mark.parametrize("layout", ["metadata.jsonl", "metadata.csv", "txt"])
def test_a_file_left_out_is_not_read_by_preparation_and_comes_back(corpus_dir, tmp_path, layout):
    folder = tmp_path / "songs"
    folder.mkdir()
    for name in ("clip_000.wav", "clip_001.wav"):
        shutil.copy(corpus_dir / name, folder / name)
    if layout == "metadata.jsonl":
        (folder / layout).write_text(
            "".join(json.dumps({"file_name": n, "text": n[:-4]}) + "\n" for n in ("clip_000.wav", "clip_001.wav"))
        )
    elif layout == "metadata.csv":
        (folder / layout).write_text("file_name,text\nclip_000.wav,clip_000\nclip_001.wav,clip_001\n")
    else:
        for name in ("clip_000", "clip_001"):
            (folder / f"{name}.txt").write_text(name)
    exclude_file(folder, folder / "clip_001.wav")
    assert _tracks(folder) == {"clip_000.wav": "clip_000"}  # preparation does not see it
    assert excluded_files(folder) == {str(folder / "clip_001.wav"): "clip_001"}
    assert len(list(folder.glob("clip_001*"))) >= 1  # not deleted
    include_file(folder, folder / "clip_001.wav")
    assert _tracks(folder) == {"clip_000.wav": "clip_000", "clip_001.wav": "clip_001"} and excluded_files(folder) == {}


def test_a_file_outside_the_folder_is_refused(corpus_dir, tmp_path):
    with pytest.raises(UserError, match="not inside the audio folder"):
        save_captions(corpus_dir, {str(tmp_path / "elsewhere.wav"): "x"})


# ------------------------------------------------------------------------------------------------ uploads


def test_uploads_copy_audio_and_extract_zips_safely(corpus_dir, tmp_path):
    bundle = tmp_path / "songs.zip"
    with zipfile.ZipFile(bundle, "w") as archive:
        archive.write(corpus_dir / "clip_000.wav", "album/a.wav")
        archive.writestr("album/a.txt", "jazz")
        archive.writestr("../escape.wav", b"RIFF")
        archive.writestr("notes.pdf", b"%PDF")
    notes = tmp_path / "notes.docx"
    notes.write_bytes(b"x")
    target = tmp_path / "project" / "data"
    added, skipped = add_uploads([bundle, corpus_dir / "clip_001.wav", notes], target)
    assert sorted(added) == ["album/a.txt", "album/a.wav", "clip_001.wav"]
    assert sorted(skipped) == [
        "../escape.wav (outside the folder)",
        "notes.docx (not audio or captions)",
        "notes.pdf (not audio or captions)",
    ]
    assert not (tmp_path / "project" / "escape.wav").exists()
    assert (target / "album" / "a.wav").read_bytes() == (corpus_dir / "clip_000.wav").read_bytes()


def test_a_broken_zip_is_a_clear_error(tmp_path):
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(UserError, match="not a readable zip"):
        add_uploads([broken], tmp_path / "data")


def test_the_data_view_shows_each_left_out_file_with_its_reason(corpus_dir, tiny_model_dir, tmp_path):
    folder = tmp_path / "songs"
    folder.mkdir()
    shutil.copy(corpus_dir / "clip_000.wav", folder / "good.wav")
    (folder / "good.txt").write_text("jazz")
    (folder / "bad.wav").write_bytes(b"RIFF, but not audio")
    studio = Studio(tmp_path / "projects")
    project = studio.project("songs")
    config, _ = build_config(project, tiny_form(tiny_model_dir, folder, add_metadata=False, extra_json=""))
    write_config(project, config)
    # the report as prepare writes it (README, "Prepare the data first"), with the bad file left out
    split = {
        "tracks": 1,
        "examples": 1,
        "hours_found": 0.001,
        "hours_kept": 0.001,
        "length_histogram": {"0-5 s": 1},
        "files": {
            "found": 2,
            "read": 1,
            "skipped": 1,
            "reasons": {"unreadable": 1},
            "skipped_files": [{"path": str(folder / "bad.wav"), "reason": "unreadable: not a WAV file"}],
        },
    }
    project.report_path.parent.mkdir(parents=True)
    project.report_path.write_text(json.dumps({"splits": {"train": split}}))
    view = studio.data_view("songs")
    assert "2 files found, 1 read, 1 left out (1 unreadable)" in view.summary
    rows = view.tracks.set_index("file")
    assert rows.loc["bad.wav", "status"] == "left out: unreadable: not a WAV file" and pd.isna(
        rows.loc["bad.wav", "seconds"]
    )
    assert rows.loc["good.wav", "status"] == "kept" and rows.loc["good.wav", "training caption"] == "jazz"
    assert list(view.lengths["clips"]) == [1] and view.tempi.empty


# A preparation that Ctrl-C does not stop, as one whose signal landed in a library that swallowed it
DEAF_TO_CTRL_C = (
    "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); print('ign' + 'oring', flush=True); "
    "time.sleep(300)"
)


def test_cancel_ends_a_preparation_that_ctrl_c_did_not_stop(corpus_dir, tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(handlers, "package_command", lambda *args: [sys.executable, "-c", DEAF_TO_CTRL_C])
    monkeypatch.setattr(handlers, "POLL_SECONDS", 0.05)
    monkeypatch.setattr(handlers, "CANCEL_GRACE_SECONDS", 0.5)
    studio = Studio(tmp_path / "projects")
    steps = studio.prepare("songs", tiny_form(tiny_model_dir, corpus_dir))
    assert next(step for step in steps if "ignoring" in step.log).message.startswith("**Preparing**")
    assert studio.cancel_prepare("songs") == "**Cancelling** the preparation…"
    last = list(steps)[-1]  # within seconds, not the 300 s it would sleep
    assert last.message.startswith("**Cancelled**: the preparation stopped")
    folder = studio.project("songs").folder
    assert studio.runs.state(folder).returncode == -15  # SIGTERM, after the Ctrl-C


def test_cancel_stops_a_preparation_and_nothing_is_reported_as_prepared(corpus_dir, tiny_model_dir, tmp_path):
    """*Cancel* while *Prepare* runs (the real command, stopped while it starts): it stops, says so, writes no data
    report, and the table lists the folder's files as not prepared; a second *Cancel* has nothing to cancel."""
    studio = Studio(tmp_path / "projects")
    steps = studio.prepare("songs", tiny_form(tiny_model_dir, corpus_dir))
    assert next(steps).message.startswith("**Preparing**")
    assert studio.cancel_prepare("songs") == "**Cancelling** the preparation…"
    last = list(steps)[-1]
    assert last.message.startswith("**Cancelled**: the preparation stopped") and last.fraction is None
    assert not studio.project("songs").report_path.exists()
    assert last.view.summary.startswith("**Not prepared**: the last *Prepare*")
    assert set(last.view.tracks["status"]) == {"not prepared yet", "not used (max_train_samples)"}
    assert studio.cancel_prepare("songs").startswith("**Error:** no preparation is going in this project")
