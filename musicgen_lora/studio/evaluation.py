"""The *Evaluate* tab's table and verdicts, read from ``evaluate.py``'s ``metrics.json``.

The rows, their readable names, formats and better directions are the report page's own
(:func:`musicgen_lora.evaluate.report.metric_sections`), so the page and ``report.html`` show the same numbers the same
way: one row per metric, the base model's value, each fine-tuned model's value and its difference to the base with
*better* or *worse* where one direction is better. A paired verdict per model (``metrics.json``'s ``comparison``,
when the evaluation wrote one) is said first, in a sentence.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from . import backend

BASE_COLUMNS = ["metric", "base"]


def empty_table(models: list[str] | None = None) -> pd.DataFrame:
    """The table's headers before any evaluation: metric, base, and each model with its change."""
    columns = list(BASE_COLUMNS)
    for model in models or ["final"]:
        columns += [model, f"{model} vs base"]
    return pd.DataFrame(columns=columns)


def _change(value: Any, base: Any, better: str | None, spec: str) -> str:
    if not isinstance(value, (int, float)) or not isinstance(base, (int, float)) or isinstance(value, bool):
        return ""
    delta = value - base
    if delta == 0:
        return "same"
    sign = "+" if delta > 0 else "−"
    text = f"{sign}{backend.format_value(abs(delta), spec)}"
    if better is None:
        return text
    return f"{text} ({'better' if (delta < 0) == (better == 'lower') else 'worse'})"


def metrics_table(metrics: dict[str, Any]) -> pd.DataFrame:
    """metrics.json as the page's table (see the module docstring); the base model is the first one."""
    blocks = metrics.get("models", {})
    if not blocks:
        return empty_table()
    names = list(blocks)
    base, others = names[0], names[1:]
    rows = []
    for section, section_rows in backend.metric_sections(metrics):
        for label, getter, better, spec in section_rows:
            base_value = backend.read_value(getter, blocks[base])
            row = [f"{section}: {label}", backend.format_value(base_value, spec)]
            for name in others:
                value = backend.read_value(getter, blocks[name])
                row += [backend.format_value(value, spec), _change(value, base_value, better, spec)]
            rows.append(row)
    table = empty_table(others)
    table.columns = [*BASE_COLUMNS[:1], base, *table.columns[2:]]
    return pd.DataFrame(rows, columns=table.columns)


def verdicts(metrics: dict[str, Any]) -> list[str]:
    """Each fine-tuned model's verdict sentence from ``comparison`` (Markdown lines; none without one)."""
    comparison = metrics.get("comparison") or {}
    lines = []
    for name, found in comparison.items():
        verdict = found.get("verdict") if isinstance(found, dict) else None
        if verdict:
            lines.append(f"**{name}**: {verdict}")
    return lines
