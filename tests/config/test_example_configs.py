"""The shipped example configs follow the README's *Recipe*: its settings, and enough optimizer steps on the folder
sizes it states (counted from the configs with the chunking and step-count code a run uses, never written down here).
"""

from __future__ import annotations

import math
import re

import pytest

from musicgen_lora.config.parsing import parse_config
from musicgen_lora.prepare.chunking import plan_chunks
from musicgen_lora.train.optimizer_steps import MIN_OPTIMIZER_STEPS, planned_optimizer_steps

from ..conftest import ROOT

README = ROOT / "README.md"
EXAMPLES = sorted((ROOT / "example_configs").glob("*.json"))
FRAMES_PER_SECOND = 50  # MusicGen's EnCodec: the unit chunking counts in
LORA_ONLY = {"learning_rate", "lora_r", "lora_alpha"}  # full fine-tuning has its own learning rate (1e-5)
# A memory preset (README, *Which GPU?*: musicgen_*_lora_8gb.json, the T4's) takes these from the planner, to fit its
# GPU; it keeps the recipe's clips per optimizer step (batch x accumulation) and every other setting.
PLANNED = {"per_device_train_batch_size", "gradient_accumulation_steps", "gradient_checkpointing", "bf16"}


def is_memory_preset(path) -> bool:
    return re.search(r"_lora_(\d+gb|t4)\.json$", path.name) is not None


def recipe_section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("\n## Recipe\n")
    return text[start : text.index("\n## ", start + 1)]


def recipe_settings() -> dict[str, str]:
    """Option -> value from the recipe table's rows whose first cell names options in backquotes: the first as many
    backquoted values of the value cell as there are names (``| `a` × `b` | `2` × `2`: ... |``)."""
    settings = {}
    for names_cell, values_cell in re.findall(r"^\| ([^|]*`[^|]*) \| ([^|]*) \|", recipe_section(), re.MULTILINE):
        names = re.findall(r"`(\w+)`", names_cell)
        values = re.findall(r"`([^`]*)`", values_cell)[: len(names)]
        assert len(values) == len(names), f"recipe row {names_cell!r} gives {len(values)} values"
        settings.update(zip(names, values, strict=True))
    return settings


def stated_songs() -> tuple[int, float]:
    """(songs, minutes each) of the recipe's worked example ("16 songs of 3.5 min give N optimizer steps")."""
    songs, minutes = re.search(r"(\d+) songs of ([\d.]+) min give \d+ optimizer steps", recipe_section()).groups()
    return int(songs), float(minutes)


def stated_minimum_minutes() -> float:
    """The recipe's least audio ("| audio | 30 min or more ...")."""
    return float(re.search(r"^\| audio \| (\d+) min or more", recipe_section(), re.MULTILINE).group(1))


def examples_of(parsed, songs: int, seconds: float) -> int:
    """Training examples a folder of ``songs`` tracks of ``seconds`` becomes under the config's data options."""
    data = parsed.data
    if not data.chunk_long_tracks:
        return songs if seconds >= data.min_duration_in_seconds else 0
    chunks = plan_chunks(
        round(seconds * FRAMES_PER_SECOND),
        round(data.max_duration_in_seconds * FRAMES_PER_SECOND),
        round(data.min_duration_in_seconds * FRAMES_PER_SECOND),
        data.tail_policy,
    )
    return songs * len(chunks)


def test_the_recipe_table_is_read():
    settings = recipe_settings()
    assert {"chunk_long_tracks", "num_train_epochs", "gradient_accumulation_steps", "learning_rate", "bf16"} <= set(
        settings
    )


def as_value(text: str):
    return {"true": True, "false": False}.get(text, text)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_config_has_the_recipes_settings(path):
    parsed = parse_config([str(path)])
    groups = (parsed.training, parsed.lora, parsed.data, parsed.model)
    settings = recipe_settings()
    for option, value in settings.items():
        if option in LORA_ONLY and not parsed.lora.use_lora:
            continue
        if option in PLANNED and is_memory_preset(path):
            continue
        (group,) = [group for group in groups if hasattr(group, option)]
        actual, wanted = getattr(group, option), as_value(value)
        if isinstance(actual, bool | str) or isinstance(wanted, bool):
            assert actual == wanted, f"{path.name}: {option} is {actual!r}, the recipe says {value}"
        else:
            assert float(actual) == pytest.approx(float(wanted)), f"{path.name}: {option} {actual}, recipe {value}"
    clips = parsed.training.per_device_train_batch_size * parsed.training.gradient_accumulation_steps
    recipe_clips = int(settings["per_device_train_batch_size"]) * int(settings["gradient_accumulation_steps"])
    assert clips == recipe_clips, f"{path.name}: {clips} clips an optimizer step, the recipe {recipe_clips}"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_config_takes_enough_optimizer_steps_on_the_folders_the_recipe_states(path):
    """The recipe's worked example (16 songs of 3.5 min) and its least audio (30 min of such songs), through the same
    chunking and step count as a run: at least the floor below which training warns."""
    parsed = parse_config([str(path)])
    songs, minutes = stated_songs()
    least = math.ceil(stated_minimum_minutes() / minutes)
    for count in (songs, least):
        steps = planned_optimizer_steps(examples_of(parsed, count, minutes * 60), parsed.training)
        assert steps >= MIN_OPTIMIZER_STEPS, f"{path.name} on {count} songs of {minutes} min: {steps} steps"


def test_the_recipes_worked_example_states_the_steps_the_small_config_takes():
    parsed = parse_config([str(ROOT / "example_configs" / "musicgen_small_lora_my_songs.json")])
    songs, minutes = stated_songs()
    steps = planned_optimizer_steps(examples_of(parsed, songs, minutes * 60), parsed.training)
    assert f"{songs} songs of {minutes:g} min give {steps} optimizer steps" in recipe_section()
    # and without chunking the same folder is one example a song: the 4 steps this recipe replaced, which now warn
    unchunked = parse_config([str(ROOT / "example_configs" / "musicgen_small_lora_my_songs.json")] + [
        "--chunk_long_tracks", "false", "--gradient_accumulation_steps", "8",
    ])  # fmt: skip
    assert planned_optimizer_steps(examples_of(unchunked, songs, minutes * 60), unchunked.training) == 4
