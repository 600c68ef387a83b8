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
from .widgets import CSS, bar_html

__all__ = ["CSS", "build_app"]

INTRO = """# MusicGen LoRA Studio
Fine-tune MusicGen on your music with LoRA: **1.** prepare a folder of songs, **2.** train, **3.** listen to the
base model and your adapters side by side, **4.** evaluate, **5.** share. The `demo` project runs offline on a tiny
random model and a synthetic corpus (its music is noise-like; every step is the real one)."""
STORAGE_KEY = "musicgen-lora-studio-project"  # the browser remembers the project it had open


def build_app(studio: Studio, project: str = DEMO_PROJECT) -> gr.Blocks:
    """The page. ``project`` is the one a browser opens on the first time (later: the one it had open)."""
    with gr.Blocks(title="MusicGen LoRA Studio", analytics_enabled=False) as app:
        gr.Markdown(INTRO)
        remembered = gr.BrowserState(project, storage_key=STORAGE_KEY)
        with gr.Row():
            project_box = gr.Dropdown(
                [project],
                value=project,
                label="Project",
                allow_custom_value=True,
                info="type a new name to start a project",
                elem_id="project",
                scale=1,
            )
            base_model = gr.Textbox(
                label="Base model",
                info="Hub id (facebook/musicgen-small) or a model folder",
                elem_id="base_model",
                scale=2,
            )
        with gr.Accordion("Rename or delete this project", open=False, elem_id="manage"):
            with gr.Row():
                new_name = gr.Textbox(label="New name", elem_id="new_name", scale=2)
                rename = gr.Button("Rename", elem_id="rename", scale=1)
                delete = gr.Button("Delete the project…", variant="stop", elem_id="delete", scale=1)
            with gr.Row(visible=False) as confirm_row:
                confirm_text = gr.Markdown(elem_id="delete_question")
                confirm = gr.Button("Yes, delete it and its files", variant="stop", elem_id="confirm_delete")
                keep = gr.Button("No, keep it", elem_id="keep_project")
        project_msg = gr.Markdown(elem_id="project_msg")
        with gr.Tabs():
            with gr.Tab("1. Data", id="data"):
                data = DataTab(studio, project_box)
            with gr.Tab("2. Train", id="train"):
                train = TrainTab(studio, project_box)
            with gr.Tab("3. Listen", id="listen") as listen_tab:
                listen = ListenTab(studio, project_box)
            with gr.Tab("4. Evaluate", id="evaluate"):
                evaluate = EvaluateTab(studio, project_box)
            with gr.Tab("5. Share", id="share"):
                share = ShareTab(studio, project_box)

        form_inputs = {"base_model": base_model, **data.form, **train.form}
        form = [form_inputs[name] for name in form_fields()]

        def collect(*values: object) -> RunForm:
            return RunForm(**dict(zip(form_fields(), values, strict=True)))

        def form_values(values: RunForm) -> list:
            return [getattr(values, name) for name in form_fields()]

        # ---------------------------------------------------------------------------------- opening a project
        opened = [
            project_msg, *form, *data.report, *data.cleared_outputs, *train.cleared_outputs, listen.adapters,
            listen.auto, *listen.cleared_outputs, *evaluate.cleared_outputs, *share.cleared_outputs, remembered,
        ]  # fmt: skip

        def open_project(name: str):
            """Everything the page shows of a project; nothing of the project shown before stays."""
            message = ""
            try:
                values = studio.defaults(name)
            except Exception as err:  # noqa: BLE001 - the project's own form, empty, with the problem said
                message, values = error_text(err), RunForm(base_model="facebook/musicgen-small", dataset="")
            try:
                view = studio.data_view(name)
            except Exception as err:  # noqa: BLE001
                message, view = message or error_text(err), None
            adapters, auto = listen.choices(name, [], [])
            return [
                message, *form_values(values), *report_values(view or DataView()), *data.cleared,
                *train.cleared(), adapters, auto, *listen.cleared(), *evaluate.opened(name), *share.cleared(), name,
            ]  # fmt: skip

        def projects(name: str):
            """The project list as it is on disk now (projects made since the page loaded, or in another tab)."""
            return gr.update(choices=sorted({name, *studio.projects()}))

        def restore(stored: str | None):
            name = stored if stored and (stored in studio.projects() or stored == project) else project
            return gr.update(choices=sorted({name, *studio.projects()}), value=name)

        app.load(restore, remembered, project_box).then(open_project, project_box, opened)
        project_box.input(open_project, project_box, opened)
        project_box.focus(projects, project_box, project_box, show_progress="hidden")

        def ask(name: str):
            question = f"Delete project **{name}** and every file in its folder (data, runs, renders)?"
            return gr.update(visible=True), question

        def renamed(name: str, new: str):
            message, now = studio.rename(name, new)
            return message, gr.update(choices=sorted({now, *studio.projects()}), value=now), ""

        def deleted(name: str):
            message, now = studio.delete(name)
            return message, gr.update(choices=sorted({now, *studio.projects()}), value=now), gr.update(visible=False)

        rename.click(renamed, [project_box, new_name], [project_msg, project_box, new_name]).then(
            _keep_message(open_project), [project_box, project_msg], opened
        )
        delete.click(ask, project_box, [confirm_row, confirm_text])
        keep.click(lambda: gr.update(visible=False), None, confirm_row)
        confirm.click(deleted, project_box, [project_msg, project_box, confirm_row]).then(
            _keep_message(open_project), [project_box, project_msg], opened
        )

        # ------------------------------------------------------------------------------------ data and training
        def prepare(name: str, *values: object):
            hold = gr.update(interactive=False)
            for step in studio.prepare(name, collect(*values)):
                done = step.view is not None or not step.message.startswith("**Preparing")
                button = gr.update(interactive=True) if done else hold
                bar = bar_html(None, "") if done else bar_html(step.fraction, "", busy=True)
                yield [button, bar, step.message, step.log, *report_values(step.view)]

        data.prepare.click(
            prepare,
            [project_box, *form],
            [data.prepare, data.bar, data.message, data.log, *data.report],
            concurrency_limit=None,
            show_progress="hidden",
        )

        def start(name: str, start_over: bool, aside: str, *values: object) -> str:
            return studio.start_training(name, collect(*values), start_over, aside)

        train.start.click(start, [project_box, train.start_over, train.aside_name, *form], train.message)
        train.timer.tick(
            train.refresh, [project_box, train.last], [*train.live, train.message, train.last], show_progress="hidden"
        )
        # the models to listen to follow the run (a finished run's final adapter is ticked, not a stale checkpoint)
        for trigger in (listen_tab.select, train.status.change):
            trigger(listen.choices, [project_box, listen.adapters, listen.auto], [listen.adapters, listen.auto])

        # ------------------------------------------------------------------------ presets and the command line
        def profile(name: str | None, *values: object):
            try:
                changed = apply_profile(collect(*values), name or "")
            except Exception as err:  # noqa: BLE001
                return [*[gr.skip()] * len(form), error_text(err)]
            note = (
                f"Applied the *{name}* profile: base model, batch, accumulation, clip length, precision, checkpointing."
            )
            return [*form_values(changed), note]

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

        train.apply_profile.click(profile, [train.profile, *form], [*form, train.presets_msg])
        train.save_preset.click(saved, [train.preset, *form], [train.presets_msg, train.preset])
        train.load_preset.click(loaded, [train.preset, *form], [*form, train.presets_msg])
        train.show_command.click(
            lambda name, *values: studio.command_lines(name, collect(*values)), [project_box, *form], train.presets_msg
        )
    return app


def _keep_message(open_project):
    """``open_project`` that keeps the message the action before it wrote (a rename, a delete)."""

    def opened(name: str, message: str):
        values = open_project(name)
        return [values[0] or message, *values[1:]]

    return opened
