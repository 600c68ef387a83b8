"""The Data tab: the audio folder and uploads, *Prepare* with its progress and *Cancel*, the data report, and the
per-file table with its caption tools (trigger word, find and replace, CLAP tags, leave a file out)."""

from __future__ import annotations

import gradio as gr
import pandas as pd

from ..handlers import Studio, error_text
from ..views import (
    EDITABLE_COLUMNS,
    TRACK_COLUMNS,
    TRACK_TYPES,
    DataView,
    fill_from_tags,
    replace_in_captions,
    write_trigger_word,
)
from .widgets import QUIET, bar_html, bar_plot, bar_update, scroll_to_end

INTRO = (
    "Pick the folder of your songs (captions in `metadata.jsonl`/`.csv` or `.txt` files beside the audio), or upload "
    "audio files or a zip into the project. A relative path is read from the projects folder. *Prepare* runs the "
    "same preparation as training."
)


def report_values(view: DataView | None) -> list:
    """The report components' values (unchanged when there is no new report)."""
    if view is None:
        return [gr.skip()] * 5
    return [view.summary, *(bar_update(f) for f in (view.lengths, view.tempi, view.keys)), view.tracks]


class DataTab:
    """The tab's components; ``form`` holds its fields of the run's form."""

    def __init__(self, studio: Studio, project_box: gr.Dropdown) -> None:
        self.studio = studio
        gr.Markdown(INTRO)
        with gr.Row():
            with gr.Column(scale=2):
                dataset = gr.Textbox(label="Audio folder", elem_id="dataset")
                trigger = gr.Textbox(
                    label="Trigger word",
                    info="put before every caption in training, e.g. 'sks style'",
                    elem_id="trigger_word",
                )
                with gr.Row():
                    add_metadata = gr.Checkbox(
                        True, label="Add the measured tempo and key to the captions", elem_id="add_metadata"
                    )
                    clap = gr.Textbox(
                        label="CLAP model folder (optional)",
                        info="a local transformers ClapModel: genre, mood and instrument tags",
                        elem_id="clap_model",
                    )
            with gr.Column(scale=1):
                uploads = gr.File(
                    file_count="multiple", type="filepath", label="Upload audio files or a zip", elem_id="uploads"
                )
                upload = gr.Button("Add the uploads to the project", elem_id="upload")
        with gr.Row():
            self.prepare = gr.Button("Prepare", variant="primary", elem_id="prepare", scale=3)
            cancel = gr.Button("Cancel", variant="stop", elem_id="cancel_prepare", scale=1)
        self.bar = gr.HTML(bar_html(None, ""), elem_id="prepare_bar")
        self.message = gr.Markdown(elem_id="data_msg")
        with gr.Accordion("Preparation log", open=False) as log_box:
            self.log = gr.Textbox(lines=12, max_lines=12, show_label=False, elem_id="prepare_log", autoscroll=True)
        self.summary = gr.Markdown(elem_id="data_summary")
        with gr.Row():
            lengths = bar_plot("length", "clips", "Clip lengths", "lengths_plot")
            tempi = bar_plot("tempo", "tracks", "Tempo", "tempo_plot")
            keys = bar_plot("key", "tracks", "Key", "key_plot")
        gr.Markdown(
            "Each file: select a row to listen; edit a caption or untick *use* to leave a file out of training (it is "
            "not deleted), then *Save changes* (written into the folder's caption files, used by the next training)."
        )
        self.tracks = gr.Dataframe(
            pd.DataFrame(columns=TRACK_COLUMNS),
            headers=TRACK_COLUMNS,
            datatype=TRACK_TYPES,
            interactive=True,
            wrap=True,
            elem_id="tracks",
            max_height=420,
            static_columns=[i for i, c in enumerate(TRACK_COLUMNS) if c not in EDITABLE_COLUMNS],
            # the status column holds a left-out file's reason: wide enough for it in three lines or fewer
            column_widths=["6%", "12%", "6%", "8%", "21%", "17%", "6%", "8%", "16%"],
        )
        with gr.Row():
            with gr.Column(scale=2):
                with gr.Row():
                    find = gr.Textbox(label="Find in captions", elem_id="find", scale=2)
                    replace = gr.Textbox(label="Replace with", elem_id="replace", scale=2)
                    replace_all = gr.Button("Replace", elem_id="replace_all", scale=1)
                with gr.Row():
                    add_trigger = gr.Button("Write the trigger word into every caption", elem_id="add_trigger")
                    fill_clap = gr.Button("Fill empty captions from the CLAP tags", elem_id="fill_clap")
            with gr.Column(scale=1):
                save = gr.Button("Save changes", variant="primary", elem_id="save_captions")
                self.saved = gr.Markdown(elem_id="save_msg")
        self.player = gr.Audio(
            type="filepath", label="Selected file", interactive=False, elem_id="track_player", buttons=["download"]
        )
        self.report = [self.summary, lengths, tempi, keys, self.tracks]
        self.form = {"dataset": dataset, "trigger_word": trigger, "add_metadata": add_metadata, "clap_model": clap}

        log_box.expand(None, None, None, js=scroll_to_end("prepare_log"))
        self.tracks.select(self._select, [project_box, self.tracks], self.player, **QUIET)
        upload.click(self._upload, [project_box, uploads], [self.message, dataset], **QUIET)
        cancel.click(studio.cancel_prepare, project_box, self.message, **QUIET)
        save.click(self._save, [project_box, self.tracks], [self.saved, *self.report], **QUIET)
        replace_all.click(self._replace, [self.tracks, find, replace], [self.tracks, self.saved], **QUIET)
        add_trigger.click(self._add_trigger, [self.tracks, trigger], [self.tracks, trigger, self.saved], **QUIET)
        fill_clap.click(self._fill_clap, [project_box, self.tracks], [self.tracks, self.saved], **QUIET)

    @property
    def cleared(self) -> list:
        """Values for another project: its report comes from :meth:`Studio.data_view`; messages, log and player go."""
        return [bar_html(None, ""), "", "", "", None]

    @property
    def cleared_outputs(self) -> list:
        return [self.bar, self.message, self.log, self.saved, self.player]

    # ------------------------------------------------------------------------------------------- handlers

    def _select(self, name: str, table: pd.DataFrame, event: gr.SelectData):
        row = event.index[0] if isinstance(event.index, (list, tuple)) else event.index
        return self.studio.audio_of_row(name, table, int(row))

    def _upload(self, name: str, files: list[str] | None):
        message, folder = self.studio.upload(name, files)
        return message, folder if folder is not None else gr.skip()

    def _save(self, name: str, table: pd.DataFrame):
        message, view = self.studio.save_table(name, table)
        return [message, *report_values(view)]

    @staticmethod
    def _replace(table: pd.DataFrame, find: str, replace: str):
        if not find:
            return gr.skip(), "**Error:** enter the text to find"
        table, changed = replace_in_captions(table, find, replace or "")
        return table, f"Replaced in {changed} caption(s); press *Save changes* to write them."

    @staticmethod
    def _add_trigger(table: pd.DataFrame, trigger: str):
        word = (trigger or "").strip()
        if not word:
            return gr.skip(), gr.skip(), "**Error:** the *Trigger word* is empty; type it first"
        table, changed = write_trigger_word(table, word)
        return (
            table,
            "",
            f"Wrote '{word}' into {changed} caption(s) and emptied *Trigger word*, so training does not add it a "
            "second time; press *Save changes* to write them.",
        )

    def _fill_clap(self, name: str, table: pd.DataFrame):
        try:
            tags = self.studio.clap_tags(name)
        except Exception as err:  # noqa: BLE001
            return gr.skip(), error_text(err)
        table, filled = fill_from_tags(table, tags)
        return table, f"Filled {filled} empty caption(s) from the CLAP tags; press *Save changes* to write them."
