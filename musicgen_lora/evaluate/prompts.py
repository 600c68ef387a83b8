"""Evaluation prompts and what they ask for (a tempo, a key), from text or a prompts file."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..audio import analysis
from ..errors import UserError
from ..files import read_user_text


@dataclass
class Prompt:
    """One prompt and what it asks for (parsed from its text unless given explicitly)."""

    text: str
    bpm: float | None = None
    key: str | None = None
    bpm_alternative: float | None = None  # "85 or 170 bpm" (a caption unsure of the tempo) asks for either

    @classmethod
    def parse(cls, text: str, bpm: float | None = None, key: str | None = None) -> Prompt:
        alternative = None
        if bpm is None:
            number = r"(\d{2,3}(?:\.\d+)?)"
            match = re.search(rf"{number}(?:\s+or\s+{number})?\s*bpm\b", text, flags=re.IGNORECASE)
            bpm = float(match.group(1)) if match else None
            alternative = float(match.group(2)) if match and match.group(2) else None
        if key is None:
            match = re.search(r"\b([A-G][#b♯♭]?)\s*(major|minor|maj|min)\b", text, flags=re.IGNORECASE)
            if match:
                parsed = analysis.parse_key(f"{match.group(1)} {match.group(2)}")
                key = analysis.key_name(*parsed) if parsed else None
        elif analysis.parse_key(key) is None:
            raise UserError(f"prompt {text!r} has key {key!r}; write a key as '<root> major|minor', e.g. 'A minor'")
        return cls(text, bpm, key, alternative)


PROMPT_KEYS = ("text", "prompt", "bpm", "key")  # "prompt" is another name for "text"
MAX_BPM = 999.0


def _json_items(path: Path, text: str) -> list[Any] | None:
    """The prompts of a JSON prompts file: a list, or an object with a ``prompts`` (or ``test_prompts``) list; None
    for a file that is not JSON and not named .json (then it is a text file, one prompt per line).

    Raises:
        UserError: a .json file (or one whose text starts like JSON) that is not valid JSON, or holds no list.
    """
    named_json = path.suffix.lower() == ".json"
    try:
        items = json.loads(text)
    except json.JSONDecodeError as err:
        if not named_json:
            return None
        raise UserError(f"prompts file '{path}' is not valid JSON ({err.msg}, line {err.lineno}); fix it") from None
    if isinstance(items, dict):
        items = items.get("prompts", items.get("test_prompts"))
    if not isinstance(items, list):
        if not named_json and not isinstance(items, dict):
            return None  # a one-line text file that happens to parse as JSON ("123", "true", "a string")
        raise UserError(
            f"prompts file '{path}' holds no list of prompts; write a JSON list, e.g. [\"lofi piano, 80 bpm\"]"
        )
    return items


def _object_prompt(item: dict[str, Any], number: int, path: Path) -> Prompt:
    """One ``{"text", "bpm", "key"}`` object of a prompts file.

    Raises:
        UserError: an unknown key (``"BPM"``, a typo), a tempo that is not a number from 1 to 999, a key that is not
            text.
    """
    unknown = [k for k in item if k not in PROMPT_KEYS]
    if unknown:
        hint = next((k.lower() for k in unknown if k.lower() in PROMPT_KEYS), None)
        raise UserError(
            f"prompt {number} in '{path}' has the key {unknown[0]!r}"
            + (f"; write it as {hint!r} (keys are lower-case)" if hint else f"; the keys are {', '.join(PROMPT_KEYS)}")
        )
    if not _text_of(item):
        raise UserError(f'prompt {number} in \'{path}\' has no "text"; give each object its prompt as "text"')
    bpm, key = item.get("bpm"), item.get("key")
    if bpm is not None and (isinstance(bpm, bool) or not isinstance(bpm, (int, float)) or not 1 <= bpm <= MAX_BPM):
        raise UserError(
            f"prompt {number} in '{path}' has bpm {bpm!r}; give a tempo from 1 to {MAX_BPM:g} bpm, or leave it out"
        )
    if key is not None and not isinstance(key, str):
        raise UserError(f"prompt {number} in '{path}' has key {json.dumps(key)[:40]}; write it as text like 'A minor'")
    return Prompt.parse(_text_of(item), bpm, key)


def _text_of(item: dict[str, Any]) -> str:
    """An object's prompt text (``text``, else ``prompt``), stripped; "" when there is none."""
    text = item.get("text", item.get("prompt"))
    return text.strip() if isinstance(text, str) else ""


def read_prompts(path: str | Path) -> list[Prompt]:
    """Prompts from a JSON list (strings, or objects with ``text``/``prompt`` and optional ``bpm``/``key``), a
    JSON object with a ``prompts`` list, or a text file with one prompt per line. A file holding JSON is read as JSON
    whatever its name (``prompts``, ``prompts.yaml``); a file named ``.json`` must hold JSON.

    Raises:
        UserError: missing file, a folder, bad JSON, an empty list, or a prompt that is not understood.
    """
    path = Path(path)
    if path.is_dir():
        raise UserError(f"prompts file '{path}' is a folder; give the prompts file itself (a JSON list, or a .txt)")
    if not path.is_file():
        raise UserError(f"prompts file '{path}' not found; give a JSON list of prompts (or a .txt, one per line)")
    text = read_user_text(path, "prompts file")
    items = _json_items(path, text)
    if items is None:
        items = [line.strip() for line in text.splitlines() if line.strip()]
    prompts = []
    for number, item in enumerate(items, start=1):
        if isinstance(item, str) and item.strip():
            prompts.append(Prompt.parse(item.strip()))
        elif isinstance(item, dict) and (_text_of(item) or any(k not in PROMPT_KEYS for k in item)):
            prompts.append(_object_prompt(item, number, path))
        else:
            raise UserError(
                f"prompt {number} in '{path}' is {json.dumps(item)[:60]}; each prompt must be a non-empty string or an "
                'object like {"text": "...", "bpm": 120, "key": "A minor"}'
            )
    if not prompts:
        raise UserError(f"prompts file '{path}' holds no prompts; add at least one")
    return prompts
