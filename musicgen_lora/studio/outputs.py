"""The Listen, Evaluate and Share tabs' actions, and the run's TensorBoard: render with the base model and adapters,
compare, push, merge.

Each runs a command of the package to its end (``python -m musicgen_lora.generate``, ``python -m
musicgen_lora.evaluate``, ``python -m musicgen_lora.push``) and turns its result into what the page shows; the long
ones yield their progress while they run. The Hub token is handed to the push command in its environment
(``HF_TOKEN``), never on its command line or in a file, and is cut out of its output.
"""

from __future__ import annotations

import atexit
import importlib.util
import json
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import backend, evaluation
from .handlers import POLL_SECONDS, Studio, error_text
from .progress import last_bar, read_text
from .project import Project, history_runs
from .runs import command_env, package_command, python_command, run_command, start_logged
from .views import clock, page_words

BASE = "base"
_PUSHED = re.compile(r"^pushed \S+ to (\S+)", re.MULTILINE)


@dataclass
class Progress:
    """One refresh of a tab while its command runs (``done``: the last one)."""

    message: str
    fraction: float | None = None
    results: list[Any] = field(default_factory=list)
    done: bool = False


def _last_error(output: str, returncode: int) -> str:
    """The command's one-line ``error: ...`` (or its last line) as the page's message."""
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    if errors:
        return f"**Error:** {page_words(errors[-1][len('error: ') :])}"
    last = next((line for line in reversed(output.splitlines()) if line.strip()), "no output")
    return f"**Error:** the command failed (exit status {returncode}): {last[:300]}"


def _config(project: Project) -> dict[str, Any]:
    if not project.config_path.is_file():
        raise backend.UserError("this project has no config yet; prepare its data or train it first")
    return json.loads(project.config_path.read_text(encoding="utf-8"))


def _refuse_while_training(studio: Studio, project: Project, what: str) -> None:
    state = studio.runs.state(project.folder) if project.exists else None
    if state is not None and state.running:
        raise backend.UserError(f"a {state.kind} run is going in this project; {what} once it has ended (or stop it)")


def _has_weights(folder: Path) -> bool:
    return any((folder / f).is_file() for f in ("adapter_model.safetensors", "model.safetensors"))


def models(studio: Studio, name: str) -> dict[str, str]:
    """The fine-tuned models of a project: ``{label: folder}`` — the run's ``final``, ``best`` and each complete
    checkpoint (newest first), then each earlier run of the history (``history/NAME``)."""
    project = studio.project(name)
    run_dir = project.run_dir
    found = {}
    if _has_weights(run_dir):
        found["final"] = str(run_dir)
    if (run_dir / "best").is_dir():
        found["best"] = str(run_dir / "best")
    for checkpoint in reversed(backend.checkpoint_folders(run_dir)):
        if backend.is_complete(checkpoint):
            found[checkpoint.name] = str(checkpoint)
    for run_name, folder in history_runs(project).items():
        if _has_weights(folder):
            found[f"history/{run_name}"] = str(folder)
    return found


def default_models(found: dict[str, str]) -> list[str]:
    """What *Listen* ticks when nothing was chosen: the newest model of the run."""
    return list(found)[:1]


def _wait(
    process: subprocess.Popen, log: Path, done: float, share: float, started: float, what: str
) -> Iterator[Progress]:
    """Progress while one of several commands runs (``done``: the share of the work before it, ``share``: its own)."""
    while process.poll() is None:
        bar = last_bar(read_text(log))
        fraction = done + share * (bar.fraction if bar else 0.0)
        elapsed = time.monotonic() - started
        left = f", about {clock(elapsed / fraction - elapsed)} left" if fraction > 0.05 else ""
        yield Progress(f"**{what}** ({clock(elapsed)} elapsed{left})", fraction)
        time.sleep(POLL_SECONDS)


def render(
    studio: Studio,
    name: str,
    prompt: str,
    duration: float | None,
    seed: float | None,
    guidance: float | None,
    chosen: list[str] | None,
) -> Iterator[Progress]:
    """Render one prompt with the base model and each chosen adapter, same seed; ``results`` of the last step:
    ``[(label, wav, mp3)]``, the base model first."""
    try:
        project = studio.project(name)
        base_model = _config(project)["model_name_or_path"]
        if not (prompt or "").strip():
            raise backend.UserError("the prompt is empty; describe the music, e.g. 'lofi hip hop, piano, 84 bpm'")
        if duration is None or float(duration) <= 0:
            raise backend.UserError("the duration must be more than 0 seconds")
        if seed is None or float(seed) != int(float(seed)):
            raise backend.UserError(f"the seed must be a whole number, got {seed}")
        if guidance is None or float(guidance) < 1:
            raise backend.UserError("guidance must be at least 1 (1 turns it off)")
        available = models(studio, name)
        unknown = [label for label in chosen or [] if label not in available]
        if unknown:
            raise backend.UserError(
                f"no model {', '.join(unknown)} in this run; pick from {', '.join(available) or 'none (train first)'}"
            )
    except Exception as err:  # noqa: BLE001
        yield Progress(error_text(err), done=True)
        return
    seed = int(float(seed))
    out = project.folder / "renders" / f"{time.strftime('%Y%m%d-%H%M%S')}-seed{seed}"
    labels = [BASE, *(chosen or [])]
    results, problems, started = [], [], time.monotonic()
    log = project.folder / "studio" / "render.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    for index, label in enumerate(labels):
        folder = out / label.replace("/", "-")
        argv = package_command(
            "generate", "--base_model", base_model, "--prompt", prompt.strip(), "--duration", f"{float(duration):g}",
            "--seed", str(seed), "--guidance_scale", f"{float(guidance):g}", "--out_dir", str(folder),
            "--format", "both",
        )  # fmt: skip
        if label != BASE:
            argv += ["--adapter", available[label]]
        process = start_logged(argv, project.folder, log)
        what = f"Rendering {label} ({index + 1} of {len(labels)}), seed {seed}"
        yield from _wait(process, log, index / len(labels), 1 / len(labels), started, what)
        if process.returncode != 0:
            problems.append(f"{label}: {_last_error(read_text(log), process.returncode).removeprefix('**Error:** ')}")
            continue
        results.append((f"{label} · seed {seed}", str(folder / "0.wav"), str(folder / "0.mp3")))
    if problems:
        yield Progress("**Error:** " + "; ".join(problems), None, results, True)
        return
    message = f"Rendered {len(results)} version(s) of the prompt with seed {seed} in `{studio.shown(out)}`."
    yield Progress(message, 1.0, results, True)


def evaluate(studio: Studio, name: str) -> Iterator[Progress]:
    """Run ``python -m musicgen_lora.evaluate --config RUN``; the last step's ``results`` are ``[table, report
    path]``, and its message starts with each model's verdict (when the evaluation gives one)."""
    try:
        project = studio.project(name)
        _refuse_while_training(studio, project, "evaluate")
        if not (project.run_dir / backend.RESOLVED_CONFIG_NAME).is_file():
            raise backend.UserError("the run has not finished yet (no finetune_config.json); train it to the end first")
        if not _config(project).get("sample_prompts"):
            raise backend.UserError(
                "the run has no sample prompts to compare on; add some on the Train tab and train again"
            )
    except Exception as err:  # noqa: BLE001
        yield Progress(error_text(err), done=True)
        return
    log = project.folder / "studio" / "evaluate.log"
    argv = package_command("evaluate", "--config", str(project.run_dir), "--overwrite")
    process = start_logged(argv, project.folder, log)
    yield from _wait(process, log, 0.0, 1.0, time.monotonic(), "Evaluating: rendering the prompts and measuring")
    if process.returncode != 0:
        yield Progress(_last_error(read_text(log), process.returncode), done=True)
        return
    yield Progress(*shown_evaluation(studio, project), done=True)


def shown_evaluation(studio: Studio, project: Project) -> tuple[str, float | None, list[Any]]:
    """``(message, fraction, [table, report path or None])`` of the project's last evaluation (an empty table if
    none)."""
    folder = project.run_dir / "evaluation"
    try:
        metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "", None, [evaluation.empty_table(), None]
    verdicts = evaluation.verdicts(metrics)
    message = "\n\n".join(
        [*verdicts, f"Evaluated; the report with players and spectrograms: `{studio.shown(folder)}`."]
    )
    report = folder / "report.html"  # (a link only to a page that is there)
    return message, 1.0, [evaluation.metrics_table(metrics), str(report) if report.is_file() else None]


def push(studio: Studio, name: str, repo_id: str, private: bool, token: str | None) -> tuple[str, str | None]:
    """Push the finished run with ``python -m musicgen_lora.push``; returns ``(message, repo url or None)``.

    The token (typed in the page, else ``HF_TOKEN`` or the saved login, as the command reads them) goes to the
    command's environment only.
    """
    token = (token or "").strip()
    try:
        project = studio.project(name)
        _refuse_while_training(studio, project, "push")
        if not re.match(r"^[\w.-]+/[\w.-]+$", (repo_id or "").strip()):
            raise backend.UserError(f"repository id {repo_id!r} must look like your-name/musicgen-lora-jazz")
        if not models(studio, name).get("final"):
            raise backend.UserError("the run has no adapter yet; train it to the end first")
    except Exception as err:  # noqa: BLE001
        return error_text(err), None
    argv = package_command("push", str(project.run_dir), "--repo_id", repo_id.strip())
    returncode, output = run_command(
        argv + (["--private"] if private else []), cwd=project.folder, env={"HF_TOKEN": token} if token else None
    )
    if token:
        output = output.replace(token, "***")
    if returncode != 0:
        return _last_error(output, returncode), None
    found = _PUSHED.search(output)
    url = found.group(1) if found else f"https://huggingface.co/{repo_id.strip()}"
    return f"Pushed to [{url}]({url}).", url


def merge(studio: Studio, name: str) -> tuple[str, str | None]:
    """Write the base model with the run's adapter merged in to ``PROJECT/merged`` (a standalone model)."""
    try:
        project = studio.project(name)
        _refuse_while_training(studio, project, "merge")
        adapter = models(studio, name).get("final")
        if adapter is None:
            raise backend.UserError("the run has no adapter yet; train it to the end first")
        base_model = _config(project)["model_name_or_path"]
    except Exception as err:  # noqa: BLE001
        return error_text(err), None
    target = project.folder / "merged"
    argv = package_command("generate", "--base_model", base_model, "--adapter", adapter, "--merge", str(target))
    returncode, output = run_command(argv, cwd=project.folder)
    if returncode != 0:
        return _last_error(output, returncode), None
    return (
        f"Merged into `{studio.shown(target)}`: it loads with `AutoModelForTextToWaveform.from_pretrained` (no PEFT "
        "needed).",
        str(target),
    )


def open_tensorboard(studio: Studio, name: str) -> str:
    """Serve the project's TensorBoard logs (started once per project and studio, stopped with the studio)."""
    try:
        project = studio.project(name)
        if "tensorboard" not in str(_config(project).get("report_to")):
            raise backend.UserError("this run does not log to TensorBoard; choose it as *Tracker* (More options)")
        if importlib.util.find_spec("tensorboard") is None:
            raise backend.UserError("TensorBoard is not installed; install it with: pip install tensorboard")
        running = studio.tensorboards.get(project.folder)
        if running is None or running[0].poll() is not None:
            with socket.socket() as probe:
                probe.bind((studio.host, 0))
                port = probe.getsockname()[1]
            argv = python_command(
                "-m", "tensorboard.main", "--logdir", str(project.run_dir), "--host", studio.host, "--port", str(port)
            )
            process = subprocess.Popen(
                argv, cwd=project.folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=command_env()
            )
            atexit.register(process.terminate)
            studio.tensorboards[project.folder] = (process, f"http://{studio.host}:{port}/")
    except Exception as err:  # noqa: BLE001
        return error_text(err)
    url = studio.tensorboards[project.folder][1]
    return f"TensorBoard: [{url}]({url}) (it may take a few seconds to start)"
