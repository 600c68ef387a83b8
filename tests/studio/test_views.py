"""What the page shows, from files written by hand: the evaluation table and verdict, the status line around the ends
of a run, messages in the page's words, the tracker link and its TensorBoard."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from musicgen_lora.studio import backend, evaluation, outputs
from musicgen_lora.studio.handlers import Studio
from musicgen_lora.studio.progress import last_bar, read_progress
from musicgen_lora.studio.runs import RunState
from musicgen_lora.studio.views import (
    REASON_CHARS,
    data_view,
    fill_from_tags,
    page_words,
    prepare_message,
    replace_in_captions,
    short_reason,
    status_line,
    tracker_link,
    write_trigger_word,
)

from .conftest import tiny_form, wait_until

METRICS = {
    "settings": {"base_model": "m", "prompts": ["a"], "num_samples": 1, "duration": 1, "seed": 0, "guidance_scale": 3},
    "models": {
        "base": {
            "cross_entropy": {"train": {"ce": 4.1589123456, "ppl": 64.0, "ce_q1": 4.2, "targets": 10, "windows": 2}},
            "frechet": {"train": {"encodec_latent": {"value": 0.000025972772541233433, "generated_frames": 5,
                                                     "reference_frames": 5, "generated_clips": 1, "reference_clips": 1},
                                  "descriptor": {"value": 3.5, "generated_frames": 5, "reference_frames": 5,
                                                 "generated_clips": 1, "reference_clips": 1}}},
            "adherence": {"files_with_target_bpm": 1, "tempo_within_4pct": 0.0, "files_with_target_key": 0},
            "health": {"silent_fraction_mean": 0.1, "loudness_lufs_mean": -20.0},
        },
        "final": {
            "cross_entropy": {"train": {"ce": 3.9, "ppl": 49.4, "ce_q1": 3.8, "targets": 10, "windows": 2}},
            "frechet": {"train": {"encodec_latent": {"value": 0.00004, "generated_frames": 5, "reference_frames": 5,
                                                     "generated_clips": 1, "reference_clips": 1},
                                  "descriptor": {"value": 3.5, "generated_frames": 5, "reference_frames": 5,
                                                 "generated_clips": 1, "reference_clips": 1}}},
            "adherence": {"files_with_target_bpm": 1, "tempo_within_4pct": 1.0, "files_with_target_key": 0},
            "health": {"silent_fraction_mean": 0.0, "loudness_lufs_mean": -18.0},
        },
    },
    "comparison": {
        "final": {
            "verdict": "final is closer to the training data than base (cross-entropy 0.26 lower, 95 % CI 0.1-0.4).",
            "metrics": {"ce": {"delta": -0.26, "ci95": [-0.4, -0.1]}},
        }
    },
}  # fmt: skip


def test_the_evaluation_table_is_readable_with_the_verdict_first():
    table = evaluation.metrics_table(METRICS)
    assert list(table.columns) == ["metric", "base", "final", "final vs base"]
    rows = table.set_index("metric")
    ce = rows.loc["Cross-entropy on 'train': ce (mean over all targets, nats)"]
    assert (ce["base"], ce["final"], ce["final vs base"]) == ("4.1589", "3.9000", "−0.2589 (better)")
    tiny = rows.loc["Fréchet distance to 'train' (not VGGish FAD): EnCodec latents"]
    assert (tiny["base"], tiny["final vs base"]) == ("2.597e-05", "+1.403e-05 (worse)")  # 4 digits, not 17
    assert rows.loc["Prompt adherence: tempo within 4 %", "final vs base"] == "+100.0 % (better)"
    assert rows.loc["Audio health: loudness (LUFS, BS.1770)", "final vs base"] == "+2.0"  # no better direction
    assert not any("." in name.split(":")[0] and "_" in name for name in table["metric"])  # no dotted internal keys
    assert evaluation.verdicts(METRICS) == [f"**final**: {METRICS['comparison']['final']['verdict']}"]
    assert evaluation.verdicts({k: v for k, v in METRICS.items() if k != "comparison"}) == []
    assert list(evaluation.empty_table().columns) == ["metric", "base", "final", "final vs base"]


def test_the_evaluate_tab_shows_the_project_s_last_evaluation(tmp_path):
    studio = Studio(tmp_path)
    project = studio.project("songs")
    assert outputs.shown_evaluation(studio, project)[0] == ""  # none yet: no placeholder table
    (project.run_dir / "evaluation").mkdir(parents=True)
    (project.run_dir / "evaluation" / "metrics.json").write_text(json.dumps(METRICS))
    message, _, (table, report) = outputs.shown_evaluation(studio, project)
    assert message.startswith("**final**: final is closer to the training data") and "songs/run/evaluation" in message
    assert len(table) > 5 and report is None  # no report page: no link to one
    (project.run_dir / "evaluation" / "report.html").write_text("<html></html>")
    assert outputs.shown_evaluation(studio, project)[2][1] == str(project.run_dir / "evaluation" / "report.html")


def _progress(run_dir: Path, *lines: dict) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    now = time.time()
    text = "".join(json.dumps({"time": now, "max_steps": 30, **line}) + "\n" for line in lines)
    (run_dir / "progress.jsonl").write_text(text)


def _state(tmp_path: Path, **changes) -> RunState:
    log = tmp_path / "train.log"
    log.write_text("")
    values = {"kind": "train", "argv": [], "pid": 1, "started": time.time() - 5, "log": str(log), "fresh_since": 0}
    return RunState(**{**values, **changes})


def test_the_status_line_around_the_ends_of_a_run(tmp_path):
    run = tmp_path / "run"
    device = {"kind": "cpu", "name": "test", "memory_total": 2**33}
    state = _state(tmp_path, resumed_from="checkpoint-15")
    status = status_line(state, read_progress(run), run, "p/run")
    assert status[:2] == ("**Resuming from checkpoint-15**: loading the model and the data…", "starting")
    _progress(run, {"event": "start", "step": 15, "resumed_from": 15, "device": device})
    status, phase, _ = status_line(state, read_progress(run), run, "p/run")
    assert phase == "training" and status.startswith("**Training**: step 15/30: the base model's samples")
    steps = [{"event": "step", "step": s, "seconds": 2.0 * (s - 15), "memory_used": 2**30} for s in range(16, 31)]
    _progress(run, {"event": "start", "step": 15, "resumed_from": 15, "device": device}, *steps[:5])
    status, phase, fraction = status_line(state, read_progress(run), run, "p/run")
    assert status == "**Training**: step 20/30 (67 %), 0:10 elapsed, about 0:20 left" and fraction == pytest.approx(
        2 / 3
    )
    _progress(run, {"event": "start", "step": 15, "resumed_from": 15, "device": device}, *steps)
    assert status_line(state, read_progress(run), run, "p/run")[:2] == (
        "**Finishing**: rendering the final samples, writing the adapter and the model card…",
        "finishing",
    )  # not "step 30/30, about 0:00 left" for the minute the end takes


@pytest.mark.parametrize(
    ("command_said", "page_says"),
    [
        ("2 clip(s) have no caption (first: a.wav); add captions or set instance_prompt to caption every clip",
         "2 clip(s) have no caption (first: a.wav); add captions or set *Trigger word* to caption every clip"),
        ("too short: 0.50 s < min_duration_in_seconds",
         "too short: 0.50 s < `min_duration_in_seconds` (*More options* → JSON)"),
        ("cannot push to the Hub: HF_HUB_OFFLINE is set; unset it (or set push_to_hub false)",
         "cannot push to the Hub: HF_HUB_OFFLINE is set; unset it"),
        ("option 'lora_dropout' in '/p/.config.1.tmp.json' must be of type float, got \"lots\"; fix its value "
         "(see --help)",
         "option `lora_dropout` (*More options* → JSON) must be of type float, got \"lots\"; fix its value"),
        ("lora_r must be positive; change 'lora_r' in the config file or with --lora_r",
         "*LoRA rank* must be positive; change *LoRA rank*"),
    ],
)  # fmt: skip
def test_messages_use_the_page_s_words(command_said, page_says):
    assert page_words(command_said) == page_says


def test_a_table_cell_gets_the_page_s_words_as_plain_text(tmp_path):
    """A data-table cell shows no Markdown: the left-out reason names the field without stars or backticks."""
    reason = f"too short: 0.50 s < min_duration_in_seconds ({tmp_path}/data/beep.wav)"
    assert short_reason(reason, f"{tmp_path}/data/beep.wav", tmp_path) == (
        "too short: 0.50 s < min_duration_in_seconds (More options → JSON) (beep.wav)"
    )
    assert page_words("set instance_prompt", markdown=False) == "set Trigger word"


def test_a_long_left_out_reason_is_cut_at_a_word_for_its_table_cell(tmp_path):
    """A decoder's message can run to 300 characters (ten lines of the status column): the cell keeps its start."""
    path = f"{tmp_path}/data/song.m4a"
    detail = "Invalid data found when processing input while reading the header of the stream " * 4
    cell = short_reason(f"unreadable: FFmpeg: {path}: {detail}", path, tmp_path)
    assert cell.startswith("unreadable: FFmpeg: song.m4a: Invalid data found") and cell.endswith(" …")
    assert len(cell) <= REASON_CHARS + 2 and cell[:-2] in f"unreadable: FFmpeg: song.m4a: {detail}"
    assert f"unreadable: FFmpeg: song.m4a: {detail}".startswith(cell[:-2] + " ")  # cut between words
    assert short_reason("silent: digital silence", path, tmp_path) == "silent: digital silence"  # short: as it is


def test_the_tracker_link_and_tensorboard(tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard not installed (pip install tensorboard)")
    wandb_log = "wandb: 🚀 View run good-run at: https://wandb.ai/me/musicgen/runs/abc123\n"
    assert tracker_link({"report_to": ["wandb"]}, wandb_log, None) == (
        "W&B: [https://wandb.ai/me/musicgen/runs/abc123](https://wandb.ai/me/musicgen/runs/abc123)"
    )
    assert tracker_link({"report_to": "none"}, wandb_log, None) == ""
    studio = Studio(tmp_path)
    project = studio.project("songs")
    project.folder.mkdir()
    project.config_path.write_text(json.dumps({"report_to": "none"}))
    assert "choose it as *Tracker*" in outputs.open_tensorboard(studio, "songs")
    project.config_path.write_text(json.dumps({"report_to": ["tensorboard"], "output_dir": str(project.run_dir)}))
    project.run_dir.mkdir()
    message = outputs.open_tensorboard(studio, "songs")
    url = studio.tensorboards[project.folder][1]
    try:
        assert message.startswith(f"TensorBoard: [{url}]({url})")

        def serves() -> bool:
            try:
                return urllib.request.urlopen(url, timeout=5).status == 200
            except OSError:
                return False

        wait_until(serves, 120, "TensorBoard to serve its page", poll=0.5)
        assert outputs.open_tensorboard(studio, "songs") == message  # one per project, not one per click
        link = studio.train_view("songs").tracker
        assert link == f"TensorBoard: [{url}]({url})"
    finally:
        process = studio.tensorboards[project.folder][0]
        process.terminate()
        process.wait(timeout=30)


def test_the_key_chart_counts_kept_files_only(tmp_path, tiny_model_dir, corpus_dir):
    """The report analyses every readable track, a left-out one too; the page's charts count the kept rows."""
    args = SimpleNamespace(
        dataset_name=str(corpus_dir), add_metadata=True, train_split_name="train", instance_prompt=None,
    )  # fmt: skip
    reason = f"too short: {corpus_dir}/clip_001.wav"
    report = {"splits": {"train": {"tracks": 1, "examples": 1, "hours_found": 0, "hours_kept": 0, "files": {
        "skipped_files": [{"path": str(corpus_dir / "clip_001.wav"), "reason": reason}]},
        "tempo_key": {"keys": {"A minor": 2}, "bpm_histogram": {"80-90 bpm": 2}}}}}  # fmt: skip
    rows = [
        {"path": str(corpus_dir / "clip_000.wav"), "caption": "x", "split": "train", "used": True},
        {"path": str(corpus_dir / "clip_001.wav"), "caption": "y", "split": "train", "used": True},
    ]
    measured = {"clip_000.wav": {"bpm": 121, "key": "C major"}, "clip_001.wav": {"bpm": 85, "key": "A minor"}}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(backend, "list_tracks", lambda _: rows)
        patch.setattr(backend, "measured_fields", lambda _, path: measured[Path(path).name])
        patch.setattr(backend, "final_caption", lambda *_: "caption")
        view = data_view(args, report, {})
    assert dict(zip(view.keys["key"], view.keys["tracks"], strict=True)) == {"C major": 1}
    assert dict(zip(view.tempi["tempo"], view.tempi["tracks"], strict=True)) == {"120-130 bpm": 1}
    status = dict(zip(view.tracks["file"], view.tracks["status"], strict=True))
    assert status == {"clip_000.wav": "kept", "clip_001.wav": "left out: too short: clip_001.wav"}  # no full path


def test_the_caption_tools_change_the_table_only():
    table = pd.DataFrame({"file": ["a.wav", "b.wav", "c.wav"], "caption": ["lofi piano", "", "sks, techno"]})
    replaced, changed = replace_in_captions(table, "lofi", "jazzy")
    assert list(replaced["caption"]) == ["jazzy piano", "", "sks, techno"] and changed == 1
    assert list(table["caption"]) == ["lofi piano", "", "sks, techno"]  # saved only by *Save changes*
    written, changed = write_trigger_word(table, "sks")
    assert list(written["caption"]) == ["sks, lofi piano", "sks", "sks, techno"] and changed == 2
    filled, changed = fill_from_tags(table, {"b.wav": "electronic, energetic", "a.wav": "jazz"})
    assert list(filled["caption"]) == ["lofi piano", "electronic, energetic", "sks, techno"] and changed == 1


def test_prepare_says_what_it_does_and_the_time_left():
    log = "=== studio: x\nLoading weights: 100%|###| 171/171 [00:01<00:00]\n"
    log += "Encoding:  25%|#  | 4/16 [00:02<00:06, 2it/s]\r"
    bar = last_bar(log)
    assert prepare_message(bar, False) == "**Preparing**: Encoding 4/16, about 0:06 left"
    assert bar.fraction == 0.25
    assert prepare_message(None, False) == "**Preparing**: loading the codec and listing the files…"
    assert prepare_message(bar, True) == "**Cancelling** the preparation…"


def test_the_clap_tags_of_the_last_preparation_fill_captions(tmp_path):
    studio = Studio(tmp_path)
    project = studio.project("songs")
    assert "enter a *CLAP model folder*" in str(pytest.raises(backend.UserError, studio.clap_tags, "songs").value)
    prepared = project.run_dir / backend.PREPARED_DIR_NAME
    prepared.mkdir(parents=True)
    rows = [
        {"file_name": "a.wav", "text": "x", "genre": "jazz", "genre_best": "jazz", "mood": None, "mood_best": "calm"},
        {"file_name": "b.wav", "text": "y", "genre": "techno", "genre_best": "techno", "instrument": "synth"},
    ]
    (prepared / backend.CAPTIONS_NAME).write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert studio.clap_tags("songs") == {"a.wav": "jazz", "b.wav": "techno, synth"}  # a tag below threshold is left out


def test_start_over_keeps_the_run_in_the_history_and_listen_offers_it(
    tmp_path, tiny_model_dir, corpus_dir, monkeypatch
):
    studio = Studio(tmp_path)
    project = studio.project("songs")
    project.run_dir.mkdir(parents=True)
    (project.run_dir / "adapter_model.safetensors").write_bytes(b"x")
    (project.run_dir / backend.FINISHED_MARKER).write_text("{}")
    started = []
    monkeypatch.setattr(studio.runs, "start", lambda folder, kind, argv, **_: started.append(argv))
    form = tiny_form(tiny_model_dir, corpus_dir)
    assert studio.start_training("songs", form).startswith("**Error:** this project's run has finished")
    refused = studio.start_training("songs", form, start_over=True, aside_name="first bad")
    assert refused.startswith("**Error:** name for the earlier run 'first bad' is not allowed")
    assert (project.run_dir / "adapter_model.safetensors").exists()  # nothing moved
    message = studio.start_training("songs", form, start_over=True, aside_name="first")
    assert message.startswith("Training started. The earlier run is kept as *first* in the run history.")
    assert started[-1][1:] == ["-m", "musicgen_lora.train", str(project.config_path)]
    assert not (project.run_dir / "adapter_model.safetensors").exists()
    assert outputs.models(studio, "songs") == {"history/first": str(project.history_dir / "first")}
