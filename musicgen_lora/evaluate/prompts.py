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

    @classmethod
    def parse(cls, text: str, bpm: float | None = None, key: str | None = None) -> Prompt:
        if bpm is None:
            match = re.search(r"(\d{2,3}(?:\.\d+)?)\s*bpm\b", text, flags=re.IGNORECASE)
            bpm = float(match.group(1)) if match else None
        if key is None:
            match = re.search(r"\b([A-G][#b♯♭]?)\s*(major|minor|maj|min)\b", text, flags=re.IGNORECASE)
            if match:
                parsed = analysis.parse_key(f"{match.group(1)} {match.group(2)}")
                key = analysis.key_name(*parsed) if parsed else None
        elif analysis.parse_key(key) is None:
            raise UserError(f"prompt {text!r} has key {key!r}; write a key as '<root> major|minor', e.g. 'A minor'")
        return cls(text, bpm, key)


def read_prompts(path: str | Path) -> list[Prompt]:
    """Prompts from a JSON list (strings, or objects with ``text``/``prompt`` and optional ``bpm``/``key``), a
    JSON object with a ``prompts`` list, or a text file with one prompt per line.

    Raises:
        UserError: missing file, bad JSON, or an empty list.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"prompts file '{path}' not found; give a JSON list of prompts (or a .txt, one per line)")
    text = read_user_text(path, "prompts file")
    if path.suffix.lower() != ".json":
        items: list[Any] = [line.strip() for line in text.splitlines() if line.strip()]
    else:
        try:
            items = json.loads(text)
        except json.JSONDecodeError as err:
            raise UserError(f"prompts file '{path}' is not valid JSON ({err.msg}, line {err.lineno}); fix it") from None
        if isinstance(items, dict):
            items = items.get("prompts", items.get("test_prompts"))
        if not isinstance(items, list):
            raise UserError(
                f"prompts file '{path}' holds no list of prompts; write a JSON list, e.g. [\"lofi piano, 80 bpm\"]"
            )
    prompts = []
    for number, item in enumerate(items, start=1):
        if isinstance(item, str) and item.strip():
            prompts.append(Prompt.parse(item.strip()))
        elif (
            isinstance(item, dict)
            and isinstance(item.get("text", item.get("prompt")), str)
            and item.get("text", item.get("prompt")).strip()
        ):
            bpm, key = item.get("bpm"), item.get("key")
            if bpm is not None and (isinstance(bpm, bool) or not isinstance(bpm, (int, float)) or not 0 < bpm < 1000):
                raise UserError(f"prompt {number} in '{path}' has bpm {bpm!r}; give a positive number or leave it out")
            if key is not None and not isinstance(key, str):
                raise UserError(
                    f"prompt {number} in '{path}' has key {json.dumps(key)[:40]}; write it as text like 'A minor'"
                )
            prompts.append(Prompt.parse(item.get("text", item.get("prompt")).strip(), bpm, key))
        else:
            raise UserError(
                f"prompt {number} in '{path}' is {json.dumps(item)[:60]}; each prompt must be a non-empty string or an "
                'object like {"text": "...", "bpm": 120, "key": "A minor"}'
            )
    if not prompts:
        raise UserError(f"prompts file '{path}' holds no prompts; add at least one")
    return prompts
