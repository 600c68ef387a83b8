"""Presets and memory profiles for the form, and the command line the form runs.

- **Presets**: the Train and Data tabs' settings saved by name (``PROJECTS_DIR/.presets/NAME.json``, shared by the
  projects; the audio folder is the project's own and is not saved), loaded into any project.
- **Memory profiles**: starting points chosen to fit a machine (:data:`MEMORY_PROFILES`, the one table of them, which
  the memory planner can check): base model, batch and accumulation, clip length, precision, checkpointing.
- **Command line**: the exact command the studio starts for the form, and the same run as one self-contained
  ``musicgen-lora train --option value ...`` line (no config file needed).
"""

from __future__ import annotations

import dataclasses
import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import backend
from .project import PROJECT_NAME, RunForm, check_project_name


@dataclass(frozen=True)
class MemoryProfile:
    """Settings that fit a kind of machine, with what they assume."""

    note: str
    base_model: str
    batch_size: int
    accumulation: int
    clip_seconds: float
    precision: str
    gradient_checkpointing: bool


# Conservative starting points (measured on CPU: musicgen-small LoRA, batch 1 x 10 s with checkpointing peaks at
# 2.7 GiB in bf16 and 4.2 GiB in fp32, bench/RESULTS.md; activations grow with batch x seconds and the model's
# size). GPU figures are estimates until the memory planner (issue 28) checks this table.
MEMORY_PROFILES: dict[str, MemoryProfile] = {
    "CPU": MemoryProfile(
        "a laptop or server CPU with 8 GB of RAM or more; fp32 works on every CPU",
        "facebook/musicgen-small", 1, 4, 10.0, "fp32", True,
    ),
    "12 GB GPU": MemoryProfile(
        "e.g. RTX 3060 12 GB, T4 16 GB; fp16 runs on every CUDA GPU (bf16 needs Ampere or newer)",
        "facebook/musicgen-small", 2, 4, 15.0, "fp16", True,
    ),
    "24 GB GPU": MemoryProfile(
        "e.g. RTX 3090/4090, A5000, L4; bf16 needs Ampere or newer (choose fp16 on older cards)",
        "facebook/musicgen-medium", 2, 4, 15.0, "bf16", True,
    ),
}  # fmt: skip


def apply_profile(form: RunForm, name: str) -> RunForm:
    """The form with a memory profile's settings.

    Raises:
        UserError: no such profile.
    """
    if name not in MEMORY_PROFILES:
        raise backend.UserError(f"no memory profile {name!r}; choose one of {', '.join(MEMORY_PROFILES)}")
    profile = dataclasses.asdict(MEMORY_PROFILES[name])
    profile.pop("note")
    return dataclasses.replace(form, **profile)


# ---------------------------------------------------------------------------------------------------- presets


def presets_dir(projects_dir: Path) -> Path:
    return projects_dir / ".presets"


def list_presets(projects_dir: Path) -> list[str]:
    folder = presets_dir(projects_dir)
    return sorted(p.stem for p in folder.glob("*.json") if PROJECT_NAME.match(p.stem)) if folder.is_dir() else []


def save_preset(projects_dir: Path, name: str, form: RunForm) -> Path:
    """Save the form's settings (all but the audio folder) as a preset.

    Raises:
        UserError: a name that is not a plain file name.
    """
    name = check_project_name(name, "preset name")
    values = dataclasses.asdict(form)
    values.pop("dataset")
    path = presets_dir(projects_dir) / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(values, indent=2) + "\n", encoding="utf-8")
    return path


def load_preset(projects_dir: Path, name: str, form: RunForm) -> RunForm:
    """The form with a preset's settings (the audio folder stays the form's).

    Raises:
        UserError: no such preset, or a file that is not one.
    """
    path = presets_dir(projects_dir) / f"{check_project_name(name, 'preset name')}.json"
    if not path.is_file():
        raise backend.UserError(f"no preset called '{name}'; choose one of: {', '.join(list_presets(projects_dir))}")
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
        known = {f.name for f in dataclasses.fields(RunForm)} - {"dataset"}
        return dataclasses.replace(form, **{k: v for k, v in values.items() if k in known})
    except (ValueError, TypeError, AttributeError):
        raise backend.UserError(f"preset '{path}' is not a saved form; delete it or save it again") from None


# --------------------------------------------------------------------------------------------- command line


def _words(key: str, value: Any) -> list[str] | None:
    """``--key value...`` for one option (None: not expressible as flags, e.g. an empty list)."""
    if value is None:
        return []  # the options' None defaults
    if isinstance(value, bool):
        return [f"--{key}", "true" if value else "false"]
    if isinstance(value, list):
        return [f"--{key}", *(json.dumps(v) if isinstance(v, dict) else str(v) for v in value)] if value else None
    if isinstance(value, dict):
        return [f"--{key}", json.dumps(value)]
    return [f"--{key}", str(value)]


def command_lines(config_path: Path, config: dict[str, Any]) -> tuple[str, str]:
    """``(the exact command the studio starts, the same run as one self-contained line of flags)``."""
    exact = shlex.join(["python", "-m", "musicgen_lora.train", str(config_path)])
    words, left = ["musicgen-lora", "train"], []
    for key, value in config.items():
        flag = _words(key, value)
        if flag is None:
            left.append(key)
        else:
            words += flag
    flags = shlex.join(words)
    if left:
        flags += f"   # and in a config file: {', '.join(left)} (an empty list cannot be given as flags)"
    return exact, flags
