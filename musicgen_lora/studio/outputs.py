"""The Listen, Evaluate and Share tabs' actions: render with the base model and adapters, compare, push, merge.

Each one runs a command of the project to its end (``python -m musicgen_lora.generate``, ``python evaluate.py``,
``python -m musicgen_lora.push``) and turns its result into what the page shows. The Hub token is handed to the
push command in its environment (``HF_TOKEN``), never on its command line or in a file, and is cut out of its output.
"""

from __future__ import annotations

import json
import os
import re
import time
from typing import Any

import pandas as pd

from . import backend
from .handlers import Studio, error_text
from .project import Project
from .runs import python_command, run_command, script

BASE = "base"
# The metrics worth a row in the page's table (leaf names of metrics.json); everything is in report.html.
METRIC_LEAVES = (
    "ce", "ppl", "value", "loudness_lufs_mean", "silent_fraction_mean", "clipping_fraction_mean", "duration_ratio_mean",
    "tempo_within_4pct", "key_score_mean", "pairwise_descriptor_distance_mean", "longest_copied_run_seconds",
)  # fmt: skip
_PUSHED = re.compile(r"^pushed \S+ to (\S+)", re.MULTILINE)


def _last_error(output: str, returncode: int) -> str:
    """The command's one-line ``error: ...`` (or its last line) as the page's message."""
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    if errors:
        return f"**Error:** {errors[-1][len('error: ') :]}"
    last = next((line for line in reversed(output.splitlines()) if line.strip()), "no output")
    return f"**Error:** the command failed (exit status {returncode}): {last[:300]}"


def _config(project: Project) -> dict[str, Any]:
    if not project.config_path.is_file():
        raise backend.UserError("this project has no config yet; prepare its data or train it first")
    return json.loads(project.config_path.read_text(encoding="utf-8"))


def _refuse_while_training(studio: Studio, project: Project, what: str) -> None:
    state = studio.runs.state(project.folder)
    if state is not None and state.running:
        raise backend.UserError(f"a {state.kind} run is going in this project; {what} once it has ended (or stop it)")


def models(studio: Studio, name: str) -> dict[str, str]:
    """The fine-tuned models of a project's run: ``{label: folder}`` — ``final``, ``best`` and each complete
    checkpoint, newest first."""
    run_dir = studio.project(name).run_dir
    found = {}
    if any((run_dir / f).is_file() for f in ("adapter_model.safetensors", "model.safetensors")):
        found["final"] = str(run_dir)
    if (run_dir / "best").is_dir():
        found["best"] = str(run_dir / "best")
    for checkpoint in reversed(backend.checkpoint_folders(run_dir)):
        if backend.is_complete(checkpoint):
            found[checkpoint.name] = str(checkpoint)
    return found


def render(
    studio: Studio,
    name: str,
    prompt: str,
    duration: float | None,
    seed: float | None,
    guidance: float | None,
    chosen: list[str] | None,
) -> tuple[str, list[tuple[str, str, str]]]:
    """Render one prompt with the base model and each chosen adapter, same seed.

    Returns:
        ``(message, [(label, wav, mp3)])``, the base model first.
    """
    try:
        project = studio.project(name)
        base_model = _config(project)["model_name_or_path"]
        if not (prompt or "").strip():
            raise backend.UserError("the prompt is empty; describe the music, e.g. 'lofi hip hop, piano, 84 bpm'")
        if duration is None or float(duration) <= 0:
            raise backend.UserError("the duration must be more than 0 seconds")
        if seed is None or float(seed) != int(seed):
            raise backend.UserError("the seed must be a whole number")
        if guidance is None or float(guidance) < 1:
            raise backend.UserError("guidance must be at least 1 (1 turns it off)")
        available = models(studio, name)
        unknown = [label for label in chosen or [] if label not in available]
        if unknown:
            raise backend.UserError(
                f"no model {', '.join(unknown)} in this run; pick from {', '.join(available) or 'none (train first)'}"
            )
    except Exception as err:  # noqa: BLE001
        return error_text(err), []
    out = project.folder / "renders" / f"{time.strftime('%Y%m%d-%H%M%S')}-seed{int(seed)}"
    results, problems = [], []
    for label in [BASE, *(chosen or [])]:
        argv = python_command(
            "-m",
            "musicgen_lora.generate",
            "--base_model",
            base_model,
            "--prompt",
            prompt.strip(),
            "--duration",
            f"{float(duration):g}",
            "--seed",
            str(int(seed)),
            "--guidance_scale",
            f"{float(guidance):g}",
            "--out_dir",
            str(out / label),
            "--format",
            "both",
        )
        if label != BASE:
            argv += ["--adapter", available[label]]
        returncode, output = run_command(argv, cwd=project.folder)
        if returncode != 0:
            problems.append(f"{label}: {_last_error(output, returncode).removeprefix('**Error:** ')}")
            continue
        results.append((label, str(out / label / "0.wav"), str(out / label / "0.mp3")))
    if problems:
        return "**Error:** " + "; ".join(problems), results
    return f"Rendered {len(results)} version(s) of the prompt with seed {int(seed)} in `{out}`.", results


def _flatten(prefix: str, value: Any, into: dict[str, float]) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}" if prefix else key, inner, into)
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and prefix.rsplit(".", 1)[-1] in METRIC_LEAVES:
        into[prefix] = float(value)


def metrics_table(metrics: dict[str, Any]) -> pd.DataFrame:
    """metrics.json as a table: one row per metric, one column per model."""
    columns: dict[str, dict[str, float]] = {}
    for model, values in metrics.get("models", {}).items():
        flat: dict[str, float] = {}
        _flatten("", {k: v for k, v in values.items() if k not in ("path", "kind")}, flat)
        columns[model] = flat
    table = pd.DataFrame(columns)
    return table.rename_axis("metric").reset_index() if len(table) else pd.DataFrame({"metric": []})


def evaluate(studio: Studio, name: str) -> tuple[str, pd.DataFrame, str | None]:
    """Run ``python evaluate.py --config RUN`` and return ``(message, metrics table, report.html path)``."""
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
        return error_text(err), pd.DataFrame(), None
    returncode, output = run_command(
        python_command(script("evaluate.py"), "--config", str(project.run_dir), "--overwrite"), cwd=project.folder
    )
    if returncode != 0:
        return _last_error(output, returncode), pd.DataFrame(), None
    folder = project.run_dir / "evaluation"
    metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    return (
        f"Evaluated; the report with players and spectrograms is `{folder / 'report.html'}`.",
        metrics_table(metrics),
        str(folder / "report.html"),
    )


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
    argv = python_command("-m", "musicgen_lora.push", str(project.run_dir), "--repo_id", repo_id.strip())
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
    argv = python_command(
        "-m", "musicgen_lora.generate", "--base_model", base_model, "--adapter", adapter, "--merge", str(target)
    )
    returncode, output = run_command(argv, cwd=project.folder)
    if returncode != 0:
        return _last_error(output, returncode), None
    return f"Merged into `{target}`: it loads with `AutoModelForTextToWaveform.from_pretrained` (no PEFT needed).", str(
        target
    )


def hub_token_from_env() -> bool:
    """Whether a token is available without typing one (``HF_TOKEN``)."""
    return bool(os.environ.get("HF_TOKEN"))
