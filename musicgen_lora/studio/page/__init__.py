"""The studio's page, built with Gradio: a project bar and five tabs over :mod:`..handlers`, :mod:`..outputs` and
:mod:`..views`.

The only part of the package that imports ``gradio`` (an optional extra: ``pip install -r requirements-studio.txt``).
It lays out the components and wires them to the handlers; it decides nothing itself. Analytics are off:
``analytics_enabled=False`` here, and ``GRADIO_ANALYTICS_ENABLED=False`` set by ``__main__``.
"""

from __future__ import annotations

import gradio as gr

from ..handlers import Studio, error_text, form_fields
from ..presets import apply_profile, list_presets, load_preset, save_preset
from ..project import DEMO_PROJECT, RunForm
from ..views import DataView
from .data_tab import DataTab, report_values
from .output_tabs import EvaluateTab, ListenTab, ShareTab
from .train_tab import TrainTab
from .widgets import CSS, HEAD, QUIET, bar_html

__all__ = ["CSS", "HEAD", "build_app"]

INTRO = """# MusicGen LoRA Studio
Fine-tune MusicGen on your music with LoRA: **1.** prepare a folder of songs, **2.** train, **3.** listen to the
base model and your adapters side by side, **4.** evaluate, **5.** share. The `demo` project runs offline on a tiny
random model and a synthetic corpus (its music is noise-like; every step is the real one)."""
STORAGE_KEY = "musicgen-lora-studio-project"  # the browser remembers the project it had open


def build_app(studio: Studio, project: str = DEMO_PROJECT) -> gr.Blocks:
    """The page. ``project`` is the one a browser opens on the first time (later: the one it had open)."""
    with gr.Blocks(title="MusicGen LoRA Studio", analytics_enabled=False) as app:
        page = Page(studio, project)
        page.wire_projects(app)
        page.wire_runs()
        page.wire_presets()
    return app


def collect(*values: object) -> RunForm:
    """The form's values, in :func:`form_fields` order, as a :class:`RunForm`."""
    return RunForm(**dict(zip(form_fields(), values, strict=True)))


def form_values(values: RunForm) -> list:
    return [getattr(values, name) for name in form_fields()]


class Page:
    """The page's components: the project bar and the five tabs."""

    def __init__(self, studio: Studio, project: str) -> None:
        self.studio, self.default = studio, project
        gr.Markdown(INTRO)
        self.remembered = gr.BrowserState(project, storage_key=STORAGE_KEY)
        with gr.Row():
            self.project = gr.Dropdown(
                [project], value=project, label="Project", allow_custom_value=True,
                info="type a new name to start a project", elem_id="project", scale=1,
            )  # fmt: skip
            base_model = gr.Textbox(
                label="Base model", info="Hub id (facebook/musicgen-small) or a model folder", elem_id="base_model",
                scale=2,
            )  # fmt: skip
        with gr.Accordion("Rename or delete this project", open=False, elem_id="manage"):
            with gr.Row():
                self.new_name = gr.Textbox(label="New name", elem_id="new_name", scale=2)
                self.rename = gr.Button("Rename", elem_id="rename", scale=1)
                self.delete = gr.Button("Delete the project…", variant="stop", elem_id="delete", scale=1)
            with gr.Row(visible=False) as self.confirm_row:
                self.confirm_text = gr.Markdown(elem_id="delete_question")
                self.confirm = gr.Button("Yes, delete it and its files", variant="stop", elem_id="confirm_delete")
                self.keep = gr.Button("No, keep it", elem_id="keep_project")
        self.message = gr.Markdown(elem_id="project_msg")
        with gr.Tabs():
            with gr.Tab("1. Data", id="data"):
                self.data = DataTab(studio, self.project)
            with gr.Tab("2. Train", id="train"):
                self.train = TrainTab(studio, self.project)
            with gr.Tab("3. Listen", id="listen") as self.listen_tab:
                self.listen = ListenTab(studio, self.project)
            with gr.Tab("4. Evaluate", id="evaluate"):
                self.evaluate = EvaluateTab(studio, self.project)
            with gr.Tab("5. Share", id="share"):
                self.share = ShareTab(studio, self.project)
        fields = {"base_model": base_model, **self.data.form, **self.train.form}
        self.form = [fields[name] for name in form_fields()]
        self.opened = [
            self.message, *self.form, *self.data.report, *self.data.cleared_outputs, *self.train.cleared_outputs,
            self.listen.adapters, self.listen.auto, self.listen.ticked, *self.listen.cleared_outputs,
            *self.evaluate.cleared_outputs, *self.share.cleared_outputs, self.remembered,
        ]  # fmt: skip

    # ------------------------------------------------------------------------------------------------ projects

    def open_project(self, name: str) -> list:
        """Everything the page shows of a project; nothing of the project shown before stays."""
        message = ""
        try:
            values = self.studio.defaults(name)
        except Exception as err:  # noqa: BLE001 - the project's own form, empty, with the problem said
            message, values = error_text(err), RunForm(base_model="facebook/musicgen-small", dataset="")
        try:
            view = self.studio.data_view(name)
        except Exception as err:  # noqa: BLE001
            message, view = message or error_text(err), DataView()
        adapters, auto, ticked = self.listen.choices(name, [], [])
        return [
            message, *form_values(values), *report_values(view), *self.data.cleared, *self.train.cleared(), adapters,
            auto, ticked, *self.listen.cleared(), *self.evaluate.opened(name), *self.share.cleared(), name,
        ]  # fmt: skip

    def _open_keeping_message(self, name: str, message: str) -> list:
        """:meth:`open_project` after a rename or a delete, whose message stays."""
        values = self.open_project(name)
        return [values[0] or message, *values[1:]]

    def _listed(self, name: str, *more: str):
        return gr.update(choices=sorted({name, *more, *self.studio.projects()}), value=name)

    def wire_projects(self, app: gr.Blocks) -> None:
        def restore(stored: str | None):
            known = stored and (stored in self.studio.projects() or stored == self.default)
            return self._listed(stored if known else self.default)

        def renamed(name: str, new: str):
            message, now = self.studio.rename(name, new)
            return message, self._listed(now), ""

        def deleted(name: str):
            message, now = self.studio.delete(name)
            return message, self._listed(now), gr.update(visible=False)

        def ask(name: str):
            question = f"Delete project **{name}** and every file in its folder (data, runs, renders)?"
            return gr.update(visible=True), question

        # Gradio's progress timer would show in every output while a project opens: the page shows none
        app.load(restore, self.remembered, self.project, **QUIET).then(
            self.open_project, self.project, self.opened, **QUIET
        )
        self.project.input(self.open_project, self.project, self.opened, **QUIET)
        # the list as it is on disk now: projects made since the page loaded, or in another tab
        self.project.focus(
            lambda name: gr.update(choices=sorted({name, *self.studio.projects()})),
            self.project,
            self.project,
            show_progress="hidden",
        )
        reopen = (self._open_keeping_message, [self.project, self.message], self.opened)
        self.rename.click(
            renamed, [self.project, self.new_name], [self.message, self.project, self.new_name], **QUIET
        ).then(*reopen, **QUIET)
        self.delete.click(ask, self.project, [self.confirm_row, self.confirm_text], **QUIET)
        self.keep.click(lambda: gr.update(visible=False), None, self.confirm_row, **QUIET)
        self.confirm.click(deleted, self.project, [self.message, self.project, self.confirm_row], **QUIET).then(
            *reopen, **QUIET
        )

    # ---------------------------------------------------------------------------------- preparing and training

    def wire_runs(self) -> None:
        data, train, listen = self.data, self.train, self.listen

        def prepare(name: str, *values: object):
            for step in self.studio.prepare(name, collect(*values)):
                done = step.view is not None or not step.message.startswith("**Preparing")
                bar = bar_html(None, "") if done else bar_html(step.fraction, "", busy=True)
                yield [gr.update(interactive=done), bar, step.message, step.log, *report_values(step.view)]

        def start(name: str, start_over: bool, aside: str, *values: object) -> str:
            return self.studio.start_training(name, collect(*values), start_over, aside)

        data.prepare.click(
            prepare,
            [self.project, *self.form],
            [data.prepare, data.bar, data.message, data.log, *data.report],
            concurrency_limit=None,
            show_progress="hidden",
        )
        train.start.click(start, [self.project, train.start_over, train.aside_name, *self.form], train.message, **QUIET)
        train.timer.tick(
            train.refresh, [self.project, train.last], [*train.live, train.message, train.last], show_progress="hidden"
        )
        # the models to listen to follow the run (a finished run's final adapter is ticked, not a stale checkpoint)
        for trigger in (self.listen_tab.select, train.status.change):
            trigger(
                listen.choices,
                [self.project, listen.ticked, listen.auto],
                [listen.adapters, listen.auto, listen.ticked],
                **QUIET,
            )

    # -------------------------------------------------------------------------- presets and the command line

    def wire_presets(self) -> None:
        studio, train, form = self.studio, self.train, self.form

        def profile(name: str | None, *values: object):
            try:
                changed = apply_profile(collect(*values), name or "")
            except Exception as err:  # noqa: BLE001
                return [*[gr.skip()] * len(form), error_text(err)]
            what = "base model, batch, accumulation, clip length, precision, checkpointing"
            return [*form_values(changed), f"Applied the *{name}* profile: {what}."]

        def saved(name: str | None, *values: object):
            try:
                path = save_preset(studio.root, name or "", collect(*values))
            except Exception as err:  # noqa: BLE001
                return error_text(err), gr.skip()
            return f"Saved the preset `{path.stem}`.", gr.update(choices=list_presets(studio.root), value=path.stem)

        def loaded(name: str | None, *values: object):
            try:
                changed = load_preset(studio.root, name or "", collect(*values))
            except Exception as err:  # noqa: BLE001
                return [*[gr.skip()] * len(form), error_text(err)]
            return [*form_values(changed), f"Loaded the preset `{name}` (the audio folder is this project's)."]

        train.apply_profile.click(profile, [train.profile, *form], [*form, train.presets_msg], **QUIET)
        train.save_preset.click(saved, [train.preset, *form], [train.presets_msg, train.preset], **QUIET)
        train.load_preset.click(loaded, [train.preset, *form], [*form, train.presets_msg], **QUIET)
        train.show_command.click(
            lambda name, *values: studio.command_lines(name, collect(*values)),
            [self.project, *form],
            train.presets_msg,
            **QUIET,
        )
