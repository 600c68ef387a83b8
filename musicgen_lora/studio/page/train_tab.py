"""The Train tab: the run's settings (with presets, memory profiles and the command line), Start / Stop / Resume,
and the live run: status with a progress bar, device, tracker, loss curves, the samples gallery and the log."""

from __future__ import annotations

import html
import re

import gradio as gr

from .. import outputs
from ..handlers import Studio, error_text
from ..presets import MEMORY_PROFILES, list_presets
from ..project import PRECISIONS, TRACKERS
from ..views import TrainView
from .widgets import QUIET, bar_html, curve_names, line_plot, scroll_to_end

TIMER_SECONDS = 2.0  # how often the Train tab refreshes while the page is open


def _number(label: str, elem_id: str, info: str | None = None) -> gr.Number:
    # no `minimum`/`precision`: Gradio would round or refuse the value with a traceback; the handlers say what is wrong
    return gr.Number(label=label, info=info, elem_id=elem_id)


class TrainTab:
    """The tab's components; ``form`` holds its fields of the run's form."""

    def __init__(self, studio: Studio, project_box: gr.Dropdown) -> None:
        self.studio = studio
        self._presets()
        self.form = self._settings()
        self._controls()
        self._live()
        self.stop.click(studio.stop_training, project_box, self.message, **QUIET)
        self.resume.click(studio.resume_training, project_box, self.message, **QUIET)
        self.open_board.click(self._open_tensorboard, project_box, self.tracker, **QUIET)

    def _presets(self) -> None:
        with gr.Accordion("Presets, memory profiles and the command line", open=False):
            with gr.Row():
                self.profile = gr.Dropdown(
                    list(MEMORY_PROFILES), value=None, label="Start from a memory profile",
                    info="settings chosen to fit the machine", elem_id="profile",
                )  # fmt: skip
                self.apply_profile = gr.Button("Apply the profile", elem_id="apply_profile")
                self.preset = gr.Dropdown(
                    list_presets(self.studio.root), label="Preset", allow_custom_value=True, elem_id="preset"
                )
                self.save_preset = gr.Button("Save the form as this preset", elem_id="save_preset")
                self.load_preset = gr.Button("Load the preset", elem_id="load_preset")
            self.show_command = gr.Button("Show the command line", elem_id="show_command")
            self.presets_msg = gr.Markdown(elem_id="presets_msg")

    def _settings(self) -> dict:
        """The run's fields, by :class:`RunForm` name."""
        with gr.Row():
            steps = _number("Steps", "steps", "0: train for the epochs")
            epochs = _number("Epochs", "epochs")
            learning_rate = _number("Learning rate", "learning_rate")
            rank = _number("LoRA rank", "rank")
            batch = _number("Batch size", "batch_size")
        with gr.Row():
            accumulation = _number("Gradient accumulation", "accumulation", "batches per optimizer step")
            clip_seconds = _number("Clip length (s)", "clip_seconds", "the window each example trains on")
            precision = gr.Dropdown(
                list(PRECISIONS), value="fp32", label="Precision", info="bf16: recent GPU or CPU; fp16: GPU"
            )
            checkpointing = gr.Checkbox(label="Gradient checkpointing", info="less memory, slower steps")
            sample_every = _number("Render the samples every N steps", "sample_every")
        prompts = gr.Textbox(label="Sample prompts (one per line)", lines=2, elem_id="sample_prompts")
        with gr.Accordion("More options", open=False):
            with gr.Row():
                save_steps = _number("Save a checkpoint every N steps", "save_steps")
                logging_steps = _number("Log every N steps", "logging_steps")
                sample_seconds = _number("Sample length (s)", "sample_seconds")
                tracker = gr.Dropdown(list(TRACKERS), value="none", label="Tracker", elem_id="tracker")
            extra = gr.Code(
                language="json",
                label="Any other option of the training command, as JSON (see README *Options*)",
                elem_id="extra_json",
            )
        return {
            "steps": steps, "epochs": epochs, "learning_rate": learning_rate, "rank": rank, "batch_size": batch,
            "accumulation": accumulation, "clip_seconds": clip_seconds, "precision": precision,
            "gradient_checkpointing": checkpointing, "sample_prompts": prompts, "sample_every_steps": sample_every,
            "save_steps": save_steps, "logging_steps": logging_steps, "sample_seconds": sample_seconds,
            "tracker": tracker, "extra_json": extra,
        }  # fmt: skip

    def _controls(self) -> None:
        with gr.Row():
            self.start = gr.Button("Start", variant="primary", elem_id="start")
            self.stop = gr.Button("Stop", variant="stop", elem_id="stop")
            self.resume = gr.Button("Resume", elem_id="resume")
            with gr.Column():
                self.start_over = gr.Checkbox(
                    label="Start over (the run so far is kept in the run history)", elem_id="start_over"
                )
                self.aside_name = gr.Textbox(
                    label="Name for the earlier run", placeholder="run-<date>", elem_id="aside_name"
                )
        self.message = gr.Markdown(elem_id="train_msg")

    def _live(self) -> None:
        """The run as it goes: status and bar, device, tracker, curves, samples gallery, log (see :meth:`refresh`)."""
        self.status = gr.HTML(bar_html(None, ""), elem_id="train_status")
        with gr.Row():
            self.device = gr.Markdown(elem_id="device")
            self.tracker = gr.Markdown(elem_id="tracker_link")
            self.open_board = gr.Button("Open TensorBoard", size="sm", elem_id="open_tensorboard", scale=0)
        with gr.Row():
            self.losses = line_plot("Loss", "loss (nats)", "curve", "loss_plot")
            self.codebooks = line_plot(
                "Cross-entropy per codebook", "cross-entropy (nats)", "codebook", "codebook_plot"
            )
        gr.Markdown(
            "**Samples**: one row per prompt, one column per render (the same seed every time: the base model "
            "before training, then every N steps, then the final adapter)."
        )
        self.gallery = gr.State([])

        @gr.render(inputs=self.gallery)
        def show_gallery(rows: list):
            with gr.Column(elem_id="samples"):
                for prompt, renders in rows:
                    gr.Markdown(prompt, elem_classes=["gallery-prompt"])
                    with gr.Row(elem_classes=["gallery-row"]):
                        for label, path in renders:
                            gr.Audio(
                                path, type="filepath", label=label, interactive=False, min_width=160,
                                buttons=["download"],
                            )  # fmt: skip

        with gr.Accordion("Training log", open=False) as log_box:
            self.log = gr.Textbox(lines=14, max_lines=14, show_label=False, elem_id="train_log", autoscroll=True)
        log_box.expand(None, None, None, js=scroll_to_end("train_log"))
        self.timer = gr.Timer(TIMER_SECONDS)
        self.last = gr.State(())

    def _open_tensorboard(self, name: str) -> str:
        return outputs.open_tensorboard(self.studio, name)

    @property
    def live(self) -> list:
        """What the timer refreshes."""
        return [self.status, self.device, self.tracker, self.losses, self.codebooks, self.gallery, self.log]

    @property
    def cleared_outputs(self) -> list:
        return [self.message, *self.live, self.last, self.presets_msg]

    @staticmethod
    def cleared() -> list:
        """Values for another project: the timer fills the live parts at its next tick."""
        return ["", bar_html(None, ""), "", "", None, None, [], "", (), ""]

    def refresh(self, name: str, last: tuple):
        """The timer's tick: each live part sent only when it changed (``last`` holds what was sent), so the plots do
        not flicker and a playing sample is not interrupted. A plot whose set of curves changed is emptied first:
        Gradio keeps the colour scale of the first data a plot draws, so a new curve would be drawn without colour."""
        try:
            view = self.studio.train_view(name)
        except Exception as err:  # noqa: BLE001
            yield [error_text(err), *[gr.skip()] * (len(self.live) - 1), gr.skip(), last]
            return
        now, values = _signature(view), _values(view)
        before = last if len(last) == len(now) else (None,) * len(now)
        sent = [value if new != old else gr.skip() for value, new, old in zip(values, now, before, strict=True)]
        # the phase changed (a run began or ended): an older message ("started", an error) no longer applies
        message = "" if before[0] is not None and before[0] != now[0] else gr.skip()
        plots = (PLOTS[0] + 1, PLOTS[1] + 1)  # their places in `now`
        renewed = [i for i in plots if now[i][0] and now[i][0] != (before[i] or ((),))[0]]
        if renewed:
            yield [None if i + 1 in renewed else gr.skip() for i in range(len(self.live))] + [gr.skip(), last]
        yield [*sent[1:], message, now]


PLOTS = (3, 4)  # the loss plots' places in TrainTab.live


def _signature(view: TrainView) -> tuple:
    """What decides whether a part changed: phase, status, device, tracker, each plot's curves (names, points, sum:
    an edit of a logged value shows), the gallery's files, the log's end."""

    def curves(frame):
        return (curve_names(frame), len(frame), round(float(frame["value"].sum()), 9) if len(frame) else 0.0)

    gallery = [[prompt, [list(r) for r in renders]] for prompt, renders in view.gallery]
    return (
        view.phase,
        (view.status, None if view.fraction is None else round(view.fraction, 3)),
        view.device,
        view.tracker,
        curves(view.losses),
        curves(view.codebooks),
        gallery,
        view.log[-500:],
    )


def _values(view: TrainView) -> list:
    return [
        view.phase,
        f'<div class="train-status">{_markdown_html(view.status)}</div>{bar_html(view.fraction, "")}',
        view.device,
        view.tracker,
        view.losses if len(view.losses) else None,
        view.codebooks if len(view.codebooks) else None,
        [[prompt, [list(r) for r in renders]] for prompt, renders in view.gallery],
        view.log,
    ]


def _markdown_html(text: str) -> str:
    """The status line's bits of Markdown (bold, italics, code) as HTML, for the status box."""
    text = html.escape(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
    text = re.sub(r"\*(.+?)\*", r"<i>\1</i>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)
