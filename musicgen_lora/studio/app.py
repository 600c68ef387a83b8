"""The studio's page, built with Gradio: five tabs over :mod:`.handlers` and :mod:`.outputs`.

The only module of the package that imports ``gradio`` (an optional extra: ``pip install -r
requirements-studio.txt``). It lays out the components and wires them to the handlers; it decides nothing itself.
Analytics are off: ``analytics_enabled=False`` here, and ``GRADIO_ANALYTICS_ENABLED=False`` set by ``__main__``.
"""

from __future__ import annotations

import functools

import gradio as gr
import pandas as pd

from . import outputs
from .handlers import CAPTION_COLUMN, TRACK_COLUMNS, DataView, Studio, counts_frame, error_text, form_fields
from .project import DEMO_PROJECT, PRECISIONS, RunForm, list_projects

TIMER_SECONDS = 2.0  # how often the Train tab refreshes while the page is open
INTRO = """# MusicGen LoRA Studio
Fine-tune MusicGen on your music with LoRA: **1.** prepare a folder of songs, **2.** train, **3.** listen to the
base model and your adapters side by side, **4.** evaluate, **5.** share. The `demo` project runs offline on a tiny
random model and a synthetic corpus (its music is noise-like; every step is the real one)."""


def _bar(x: str, y: str, title: str) -> gr.BarPlot:
    return gr.BarPlot(counts_frame(x, y), x=x, y=y, title=title, height=240, y_lim=[0, None], x_label_angle=-40)


def _line(title: str, color_title: str, elem_id: str) -> gr.LinePlot:
    empty = pd.DataFrame(
        {"step": pd.Series(dtype=float), "value": pd.Series(dtype=float), "curve": pd.Series(dtype=object)}
    )
    return gr.LinePlot(
        empty,
        x="step",
        y="value",
        color="curve",
        title=title,
        color_title=color_title,
        height=260,
        x_axis_format="d",
        elem_id=elem_id,
    )


def _data_outputs(view: DataView | None) -> list:
    """The Data tab's report components' values (unchanged when there is no new report)."""
    if view is None:
        return [gr.skip()] * 5
    # the bins in the report's order (the plot would sort the labels as text: "100-110 bpm" before "70-80 bpm")
    bars = [gr.update(value=frame, sort=list(frame.iloc[:, 0])) for frame in (view.lengths, view.tempi, view.keys)]
    return [view.summary, *bars, view.tracks]


def build_app(studio: Studio, project: str = DEMO_PROJECT) -> gr.Blocks:
    """The page. ``project`` is the one it opens on (the demo by default)."""
    with gr.Blocks(title="MusicGen LoRA Studio", analytics_enabled=False) as app:
        gr.Markdown(INTRO)
        with gr.Row():
            project_box = gr.Dropdown(
                [project, *[p for p in list_projects(studio.root) if p != project]],
                value=project,
                label="Project",
                allow_custom_value=True,
                info="type a new name to start a project",
                elem_id="project",
                scale=1,
            )
            base_model = gr.Textbox(
                label="Base model",
                info="Hub id (facebook/musicgen-small) or a local model folder",
                elem_id="base_model",
                scale=2,
            )
        project_msg = gr.Markdown(elem_id="project_msg")
        with gr.Tabs():
            with gr.Tab("1. Data", id="data"):
                data = _data_tab(studio, project_box)
            with gr.Tab("2. Train", id="train"):
                train = _train_tab(studio, project_box)
            with gr.Tab("3. Listen", id="listen") as listen_tab:
                listen = _listen_tab(studio, project_box)
            with gr.Tab("4. Evaluate", id="evaluate"):
                _evaluate_tab(studio, project_box)
            with gr.Tab("5. Share", id="share"):
                _share_tab(studio, project_box)

        form_inputs = {"base_model": base_model, **data["form"], **train["form"]}
        form = [form_inputs[name] for name in form_fields()]

        def collect(*values: object) -> RunForm:
            return RunForm(**dict(zip(form_fields(), values, strict=False)))

        def prepare(name: str, *values: object):
            for message, log, view in studio.prepare(name, collect(*values)):
                yield [message, log, *_data_outputs(view)]

        data["prepare"].click(
            prepare, [project_box, *form], [data["message"], data["log"], *data["report"]], concurrency_limit=None
        )

        def start(name: str, start_over: bool, *values: object) -> str:
            return studio.start_training(name, collect(*values), start_over)

        train["start"].click(start, [project_box, train["start_over"], *form], train["message"])

        def open_project(name: str):
            try:
                form_values = studio.defaults(name)
                view = studio.data_view(name)
            except Exception as err:  # noqa: BLE001
                return [error_text(err)] + [gr.skip()] * (len(form) + 5 + 1)
            values = [getattr(form_values, field) for field in form_fields()]
            choices = list(outputs.models(studio, name))
            return ["", *values, *_data_outputs(view), gr.update(choices=choices, value=choices[:1])]

        listen_tab.select(
            listen["choices"], [project_box, listen["adapters"]], listen["adapters"]
        )  # the adapters trained meanwhile
        opened = [project_msg, *form, *data["report"], listen["adapters"]]
        project_box.change(open_project, project_box, opened)
        app.load(open_project, project_box, opened)
    return app


def _data_tab(studio: Studio, project_box: gr.Dropdown) -> dict:
    gr.Markdown(
        "Pick the folder of your songs (captions in `metadata.jsonl`/`.csv` or `.txt` files beside the audio), "
        "or upload audio files or a zip into the project. *Prepare* runs the same preparation as training."
    )
    with gr.Row():
        with gr.Column(scale=2):
            dataset = gr.Textbox(label="Audio folder", elem_id="dataset")
            trigger = gr.Textbox(
                label="Trigger word",
                info="put before every caption (instance_prompt), e.g. 'sks style'",
                elem_id="trigger_word",
            )
            add_metadata = gr.Checkbox(
                True, label="Add the measured tempo and key to the captions", elem_id="add_metadata"
            )
        with gr.Column(scale=1):
            uploads = gr.File(file_count="multiple", type="filepath", label="Upload audio files or a zip")
            upload = gr.Button("Add the uploads to the project")
    prepare = gr.Button("Prepare", variant="primary", elem_id="prepare")
    message = gr.Markdown(elem_id="data_msg")
    with gr.Accordion("Preparation log", open=False):
        log = gr.Textbox(lines=12, max_lines=12, show_label=False, elem_id="prepare_log")
    summary = gr.Markdown(elem_id="data_summary")
    with gr.Row():
        lengths = _bar("length", "clips", "Clip lengths")
        tempi = _bar("tempo", "tracks", "Tempo")
        keys = _bar("key", "tracks", "Key")
    gr.Markdown(
        "Each file: select a row to listen; edit a caption cell, then *Save captions* (written into the folder's "
        "caption files, used by the next training)."
    )
    tracks = gr.Dataframe(
        pd.DataFrame(columns=TRACK_COLUMNS),
        headers=TRACK_COLUMNS,
        interactive=True,
        wrap=True,
        elem_id="tracks",
        max_height=420,
        static_columns=[i for i in range(len(TRACK_COLUMNS)) if i != CAPTION_COLUMN],
        column_widths=["13%", "6%", "7%", "9%", "27%", "6%", "9%", "23%"],
    )
    with gr.Row():
        player = gr.Audio(
            type="filepath", label="Selected file", interactive=False, elem_id="track_player", buttons=["download"]
        )
        with gr.Column():
            save = gr.Button("Save captions", elem_id="save_captions")
            saved = gr.Markdown(elem_id="save_msg")

    def select(name: str, table: pd.DataFrame, event: gr.SelectData):
        row = event.index[0] if isinstance(event.index, (list, tuple)) else event.index
        return studio.audio_of_row(name, table, int(row))

    def add(name: str, files: list[str] | None):
        try:
            return studio.upload(name, files)
        except Exception as err:  # noqa: BLE001
            return error_text(err), gr.skip()

    def save_captions(name: str, table: pd.DataFrame):
        try:
            message = studio.save_captions(name, table)
            return message, studio.data_view(name).tracks
        except Exception as err:  # noqa: BLE001
            return error_text(err), gr.skip()

    tracks.select(select, [project_box, tracks], player)
    upload.click(add, [project_box, uploads], [message, dataset])
    save.click(save_captions, [project_box, tracks], [saved, tracks])
    return {
        "form": {"dataset": dataset, "trigger_word": trigger, "add_metadata": add_metadata},
        "prepare": prepare,
        "message": message,
        "log": log,
        "report": [summary, lengths, tempi, keys, tracks],
    }


def _train_tab(studio: Studio, project_box: gr.Dropdown) -> dict:
    with gr.Row():
        steps = gr.Number(label="Steps", info="0: train for the epochs", precision=0, minimum=0, elem_id="steps")
        epochs = gr.Number(label="Epochs", minimum=0, elem_id="epochs")
        learning_rate = gr.Number(label="Learning rate", elem_id="learning_rate")
        rank = gr.Number(label="LoRA rank", precision=0, minimum=1, elem_id="rank")
        batch = gr.Number(label="Batch size", precision=0, minimum=1, elem_id="batch_size")
    with gr.Row():
        precision = gr.Dropdown(
            list(PRECISIONS), value="fp32", label="Precision", info="bf16: GPU or a recent CPU; fp16: GPU"
        )
        checkpointing = gr.Checkbox(label="Gradient checkpointing", info="less memory, slower steps")
        sample_every = gr.Number(
            label="Render the samples every N steps", precision=0, minimum=0, elem_id="sample_every"
        )
    prompts = gr.Textbox(label="Sample prompts (one per line)", lines=2, elem_id="sample_prompts")
    with gr.Accordion("More options", open=False):
        with gr.Row():
            save_steps = gr.Number(
                label="Save a checkpoint every N steps", precision=0, minimum=1, elem_id="save_steps"
            )
            logging_steps = gr.Number(label="Log every N steps", precision=0, minimum=1, elem_id="logging_steps")
            sample_seconds = gr.Number(label="Sample length (s)", minimum=0, elem_id="sample_seconds")
        extra = gr.Code(
            language="json",
            label="Any other option of finetune_musicgen.py, as JSON (see README *Options*)",
            elem_id="extra_json",
        )
    with gr.Row():
        start = gr.Button("Start", variant="primary", elem_id="start")
        stop = gr.Button("Stop", variant="stop", elem_id="stop")
        resume = gr.Button("Resume", elem_id="resume")
        start_over = gr.Checkbox(label="Start over (replaces this project's previous run)", elem_id="start_over")
    message = gr.Markdown(elem_id="train_msg")
    status = gr.Markdown(elem_id="train_status")
    with gr.Row():
        losses = _line("Loss", "curve", "loss_plot")
        codebooks = _line("Cross-entropy per codebook", "codebook", "codebook_plot")
    gr.Markdown(
        "**Samples** (the same prompts and seed at every render: base model before training, then every N steps)"
    )
    samples = gr.State([])

    @gr.render(inputs=samples)
    def show_samples(items: list[tuple[str, str]]):
        with gr.Row(elem_id="samples"):
            for label, path in items:
                gr.Audio(path, type="filepath", label=label, interactive=False, min_width=220, buttons=["download"])

    with gr.Accordion("Training log", open=False):
        log = gr.Textbox(lines=14, max_lines=14, show_label=False, elem_id="train_log")
    timer = gr.Timer(TIMER_SECONDS)

    last = gr.State(())
    refreshed = [status, losses, codebooks, samples, log, last]
    timer.tick(functools.partial(_refresh, studio), [project_box, samples, last], refreshed, show_progress="hidden")
    stop.click(studio.stop_training, project_box, message)
    resume.click(studio.resume_training, project_box, message)
    project_box.change(lambda: ((), []), None, [last, samples])
    form = {
        "steps": steps,
        "epochs": epochs,
        "learning_rate": learning_rate,
        "rank": rank,
        "batch_size": batch,
        "precision": precision,
        "gradient_checkpointing": checkpointing,
        "sample_prompts": prompts,
        "sample_every_steps": sample_every,
        "save_steps": save_steps,
        "logging_steps": logging_steps,
        "sample_seconds": sample_seconds,
        "extra_json": extra,
    }
    return {"form": form, "start": start, "start_over": start_over, "message": message}


def _refresh(studio: Studio, name: str, shown: list, last: tuple) -> list:
    """The Train tab's timer: status, curves, samples and log, each sent only when it changed (``last`` holds what
    was sent), so the plots do not flicker and a playing sample is not interrupted."""
    try:
        view = studio.train_view(name)
    except Exception as err:  # noqa: BLE001
        return [error_text(err), gr.skip(), gr.skip(), gr.skip(), gr.skip(), last]
    # the sum changes when trainer_state.json's exact values replace the log's rounded ones
    curves = (len(view.losses), len(view.codebooks), round(float(view.losses["value"].sum()), 9))
    now = (view.status, curves, [list(s) for s in view.samples], view.log[-500:])
    before = last if len(last) == len(now) else (None,) * len(now)
    values = [view.status, (view.losses, view.codebooks), now[2], view.log]
    sent = [value if new != old else gr.skip() for value, new, old in zip(values, now, before, strict=False)]
    losses, codebooks = sent[1] if isinstance(sent[1], tuple) else (gr.skip(), gr.skip())
    samples = sent[2] if now[2] != shown else gr.skip()
    return [sent[0], losses, codebooks, samples, sent[3], now]


def _listen_tab(studio: Studio, project_box: gr.Dropdown) -> dict:
    gr.Markdown(
        "The same prompt and seed with the base model and each adapter you tick; longer than 30 s is generated "
        "by continuation. Each player has a download button; WAV and MP3 are below it."
    )
    prompt = gr.Textbox(label="Prompt", value="lofi hip hop, 84 bpm, A minor, piano", elem_id="listen_prompt")
    with gr.Row():
        duration = gr.Number(2, label="Seconds", minimum=0.1, elem_id="listen_duration")
        seed = gr.Number(0, label="Seed", precision=0, elem_id="listen_seed")
        guidance = gr.Number(3, label="Guidance", minimum=1, elem_id="listen_guidance")
        adapters = gr.CheckboxGroup([], label="Adapters (the base model is always rendered)", elem_id="adapters")
    render = gr.Button("Render", variant="primary", elem_id="render")
    message = gr.Markdown(elem_id="listen_msg")
    results = gr.State([])

    @gr.render(inputs=results)
    def show(items: list[tuple[str, str, str]]):
        with gr.Row(elem_id="renders"):
            for label, wav, mp3 in items:
                with gr.Column(min_width=240):
                    gr.Audio(wav, type="filepath", label=label, interactive=False, buttons=["download"])
                    gr.File([wav, mp3], label=f"{label}: WAV and MP3", interactive=False)

    def run(name, text, seconds, seed_value, guidance_value, chosen):
        message_text, items = outputs.render(studio, name, text, seconds, seed_value, guidance_value, chosen)
        return message_text, [list(item) for item in items]

    def choices(name: str, ticked: list[str] | None = None):
        found = list(outputs.models(studio, name))
        kept = [label for label in ticked or [] if label in found]
        return gr.update(choices=found, value=kept or found[:1])

    render.click(
        run, [project_box, prompt, duration, seed, guidance, adapters], [message, results], concurrency_limit=None
    )
    return {"adapters": adapters, "choices": choices}


def _evaluate_tab(studio: Studio, project_box: gr.Dropdown) -> None:
    gr.Markdown(
        "Runs `evaluate.py --config RUN`: the run's sample prompts rendered by the base model and the adapter "
        "(same seeds), cross-entropy on the data, Fréchet distances, tempo/key adherence, audio health."
    )
    button = gr.Button("Evaluate the run", variant="primary", elem_id="evaluate")
    message = gr.Markdown(elem_id="evaluate_msg")
    table = gr.Dataframe(interactive=False, elem_id="metrics")
    report = gr.HTML(elem_id="report_link")

    def run(name: str):
        text, metrics, page = outputs.evaluate(studio, name)
        link = f'<a href="/gradio_api/file={page}" target="_blank">Open the report page</a>' if page else ""
        return text, metrics, link

    button.click(run, project_box, [message, table, report], concurrency_limit=None)


def _share_tab(studio: Studio, project_box: gr.Dropdown) -> None:
    gr.Markdown(
        "Push the finished run (adapter, model card, samples) to a Hub model repository. The token is used for "
        "this push only: it is not written to disk or to any log. Empty: `HF_TOKEN` or your `hf auth login`."
    )
    with gr.Row():
        repo_id = gr.Textbox(label="Repository id", placeholder="your-name/musicgen-lora-jazz", elem_id="repo_id")
        private = gr.Checkbox(True, label="Private")
        token = gr.Textbox(label="Hub token", type="password", elem_id="hub_token")
    push = gr.Button("Push to the Hub", variant="primary", elem_id="push")
    pushed = gr.Markdown(elem_id="push_msg")
    gr.Markdown("Or write a standalone model with the adapter merged in (loads without PEFT):")
    merge = gr.Button("Merge into a standalone model", elem_id="merge")
    merged = gr.Markdown(elem_id="merge_msg")
    push.click(
        lambda *a: outputs.push(studio, *a)[0], [project_box, repo_id, private, token], pushed, concurrency_limit=None
    )
    merge.click(lambda name: outputs.merge(studio, name)[0], project_box, merged, concurrency_limit=None)
