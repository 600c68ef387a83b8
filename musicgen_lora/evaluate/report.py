"""``report.html``: one page to listen from and read the numbers, with the base model as the reference: each adapter's
verdict first, then its change on every metric with the 95 % interval, the metrics of every model, and the clips.

The page is rendered by Jinja2 from ``report_template.html`` (autoescaped: every prompt, path and name is text). It
is self-contained: inline CSS and script, and only relative links to the WAVs and spectrogram PNGs beside
it, so the whole evaluation folder can be copied or zipped and opened anywhere, offline. A small inline script marks
each ``<audio>`` with ``data-ready`` once the browser has read its metadata (and ``data-error`` if it cannot), and the
``<html>`` element with ``data-audio-ready="N/M"``, ``data-images-ready`` and ``data-missing`` (resources that failed
to load), which is what the headless-browser test reads."""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jinja2

from .arguments import MIN_CLIPS
from .comparison import EMBEDDING_NAMES, describe

TEMPLATE = "report_template.html"

# (label, how to read the value from a model block, which direction is better: "lower", "higher" or None, format)
Row = tuple[str, Callable[[dict[str, Any]], Any], str | None, str]


_SCRIPT = """
(function () {
  var root = document.documentElement, missing = [];
  // resource errors do not bubble: listen in the capture phase, before any element exists
  window.addEventListener('error', function (event) {
    var t = event.target;
    if (t && t !== window && (t.src || t.currentSrc)) note(t.getAttribute('src') || t.currentSrc);
  }, true);
  function note(src) {
    if (missing.indexOf(src) < 0) missing.push(src);
    root.setAttribute('data-missing', missing.join(' '));
  }
  document.addEventListener('DOMContentLoaded', function () {
    var audios = document.querySelectorAll('audio'), ready = 0;
    root.setAttribute('data-audio-ready', '0/' + audios.length);
    audios.forEach(function (audio) {
      function ok() {
        if (audio.dataset.ready) return;
        audio.dataset.ready = '1';
        audio.dataset.duration = String(audio.duration);
        ready += 1;
        root.setAttribute('data-audio-ready', ready + '/' + audios.length);
      }
      audio.addEventListener('loadedmetadata', ok);
      audio.addEventListener('canplay', ok);
      audio.addEventListener('error', function () {
        audio.dataset.error = '1';
        note(audio.getAttribute('src'));
      });
      if (audio.readyState >= 1) ok();
    });
  });
  window.addEventListener('load', function () {
    var images = document.querySelectorAll('img'), loaded = 0;
    images.forEach(function (img) { if (img.complete && img.naturalWidth > 0) loaded += 1; });
    root.setAttribute('data-images-ready', loaded + '/' + images.length);
  });
})();
"""


_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: .5em 0; }
th, td { border: 1px solid #ccc; padding: 4px 8px; vertical-align: top; }
th { background: #f2f2f2; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.better { color: #17752c; } .worse { color: #b3261e; }
.delta { font-size: .85em; margin-left: .4em; }
.clip { margin-bottom: .6em; } .clip img { display: block; width: 320px; height: 96px; image-rendering: auto; }
.clip audio { width: 320px; } .meta { font-size: .8em; color: #555; }
.note { font-size: .85em; color: #555; max-width: 70em; }
#verdict li { margin: .3em 0; } .verdict.steady { color: #555; } td.changed { font-weight: 600; }
.copy-badge { display: inline-block; background: #b3261e; color: #fff; border-radius: 3px; padding: 1px 6px;
  font-size: .8em; font-weight: 600; margin: 2px 0; } .copied { border-left: 3px solid #b3261e; padding-left: 4px; }
"""


def _fmt(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if spec == "pct":
        return f"{100 * value:.1f} %"
    return format(value, spec)


def _read(*keys: str) -> Callable[[dict[str, Any]], Any]:
    """A reader of the value at ``block[k1][k2]...`` in a model's block of metrics.json."""
    return lambda block: functools.reduce(operator.getitem, keys, block)


_ADHERENCE_ROWS: list[Row] = [
    ("files with a tempo in the prompt", _read("adherence", "files_with_target_bpm"), None, "d"),
    ("tempo within 4 %", _read("adherence", "tempo_within_4pct"), "higher", "pct"),
    ("tempo within 4 % (any octave)", _read("adherence", "tempo_within_4pct_any_octave"), "higher", "pct"),
    ("mean relative tempo error", _read("adherence", "tempo_rel_error_mean"), "lower", "pct"),
    ("files with a key in the prompt", _read("adherence", "files_with_target_key"), None, "d"),
    ("key score (MIREX: 1 same, .5 fifth, .3 relative, .2 parallel)", _read("adherence", "key_score_mean"), "higher",
     ".2f"),
    ("key exact", _read("adherence", "key_exact"), "higher", "pct"),
]  # fmt: skip
_HEALTH_ROWS: list[Row] = [
    ("shortest duration / requested", _read("health", "duration_ratio_min"), None, ".3f"),
    ("silent fraction (50 ms windows under -60 dBFS)", _read("health", "silent_fraction_mean"), "lower", "pct"),
    ("clipped samples", _read("health", "clipping_fraction_mean"), "lower", "pct"),
    ("loudness (LUFS, BS.1770)", _read("health", "loudness_lufs_mean"), None, ".1f"),
    ("files with NaN/Inf samples", _read("health", "files_with_nonfinite_samples"), "lower", "d"),
]  # fmt: skip


def _rows(metrics: dict[str, Any]) -> list[tuple[str, list[Row]]]:
    """The report's tables: a title and its rows, for the metrics the first model's block holds."""
    first = next(iter(metrics["models"].values()))
    sections = _cross_entropy_sections(first) + _frechet_sections(first)
    sections += [("Prompt adherence", _ADHERENCE_ROWS), ("Audio health", _HEALTH_ROWS)]
    sections.append(("Diversity and memorisation", _diversity_rows(first)))
    if "clap_score_mean" in first:
        sections.append(("CLAP", [("text-audio similarity", _read("clap_score_mean"), "higher", ".3f")]))
    return sections


def metric_sections(metrics: dict[str, Any]) -> list[tuple[str, list[Row]]]:
    """The report's tables, for other pages that show the same numbers (the Studio's *Evaluate* tab): a title and
    its rows ``(label, read(model block), "lower" | "higher" | None, format)``."""
    return _rows(metrics)


def format_value(value: Any, spec: str) -> str:
    """A metric as the report writes it (``spec``: a format spec, or ``"pct"``; ``–`` where there is none)."""
    return _fmt(value, spec)


def read_value(getter: Callable[[dict[str, Any]], Any], block: dict[str, Any]) -> Any:
    """A row's value in one model's block (None where the block has none)."""
    return _safe(getter, block)


def _cross_entropy_sections(first: dict[str, Any]) -> list[tuple[str, list[Row]]]:
    sections = []
    counts = "{targets} / {windows}".format
    for dataset, ce in first.get("cross_entropy", {}).items():
        label = f"Cross-entropy on '{dataset}'" + ("" if ce.get("held_out", True) else " (training data, not held out)")
        codebooks = sorted((k for k in ce if k.startswith("ce_q")), key=lambda k: int(k[4:]))
        rows: list[Row] = [
            ("ce (mean over all targets, nats)", _read("cross_entropy", dataset, "ce"), "lower", ".4f"),
            ("perplexity", _read("cross_entropy", dataset, "ppl"), "lower", ".2f"),
        ]
        rows += [(k, _read("cross_entropy", dataset, k), "lower", ".4f") for k in codebooks]
        rows.append(("targets / windows", lambda b, d=dataset: counts(**b["cross_entropy"][d]), None, "s"))
        sections.append((label, rows))
    return sections


def _frechet_sections(first: dict[str, Any]) -> list[tuple[str, list[Row]]]:
    sections = []
    counts = "{generated_frames} / {reference_frames} ({generated_clips} / {reference_clips})".format
    for dataset, embeddings in first.get("frechet", {}).items():
        rows: list[Row] = []
        for kind in embeddings:
            name = EMBEDDING_NAMES.get(kind, kind)
            rows.append((name, _read("frechet", dataset, kind, "value"), "lower", ".4g"))
            rows.append((f"{name}: FAD∞", _read("frechet", dataset, kind, "fad_inf", "value"), "lower", ".4g"))
            read_counts = lambda b, d=dataset, k=kind: counts(**b["frechet"][d][k])  # noqa: E731
            rows.append((f"{name}: frames generated / reference (clips)", read_counts, None, "s"))
        sections.append((f"Fréchet distance to '{dataset}' (not VGGish FAD)", rows))
    if "per_song_fad" in first:
        rows = [("per-song FAD to the training files, mean over clips (EnCodec code latents)",
                 _read("per_song_fad", "mean"), None, ".4g")]  # fmt: skip
        sections.append(("Per-song FAD", rows))
    return sections


def _diversity_rows(first: dict[str, Any]) -> list[Row]:
    rows: list[Row] = [
        ("mean distance between samples of a prompt", _read("diversity", "pairwise_descriptor_distance_mean"), None,
         ".3f"),
    ]  # fmt: skip
    memorisation = first.get("memorisation")
    if not memorisation:
        return rows
    rows += [
        ("copy score, max over clips (share of a clip lined up with one training clip)",
         _read("memorisation", "copy_score"), "lower", ".2f"),
        ("copy score, mean", _read("memorisation", "copy_score_mean"), "lower", ".2f"),
        (f"clips flagged as copies (copy score >= {memorisation['copy_threshold']:g})", _read("memorisation", "copies"),
         "lower", "d"),
    ]  # fmt: skip
    if "melody_similarity" in memorisation:
        rows += [
            ("melody similarity, max (chroma correlation, any key)", _read("memorisation", "melody_similarity"),
             "lower", ".2f"),
            (f"clips flagged as melodic copies (>= {memorisation['melody_threshold']:g})",
             _read("memorisation", "melody_copies"), "lower", "d"),
        ]  # fmt: skip
    return rows + [
        ("longest run copied from training (s)", _read("memorisation", "longest_copied_run_seconds"), "lower", ".2f"),
        ("longest run copied, first codebook (frames)", _read("memorisation", "longest_copied_run_frames_q1"), "lower",
         "d"),
    ]  # fmt: skip


def _cell(value: Any, base: Any, better: str | None, spec: str, is_base: bool) -> tuple[str, str, str]:
    """A table cell: ``(value, difference to the base model, "better" or "worse")`` (the last two empty when there is
    no difference to show)."""
    text = _fmt(value, spec)
    if is_base or better is None or not isinstance(value, (int, float)) or not isinstance(base, (int, float)):
        return text, "", ""
    delta = value - base
    if delta == 0:
        return text, "", ""
    good = (delta < 0) == (better == "lower")
    return text, ("+" if delta > 0 else "−") + _fmt(abs(delta), spec), "better" if good else "worse"


def _safe(getter: Callable[[dict[str, Any]], Any], block: dict[str, Any]) -> Any:
    try:
        return getter(block)
    except (KeyError, TypeError, IndexError):
        return None


def _copy_text(record: dict[str, Any]) -> str | None:
    """What a clip flagged as a copy copies, naming the training file (None for a clip not flagged)."""
    if not record.get("copy"):
        return None
    if record.get("copy_kind") == "codes":
        name = record.get("copy_training_file") or f"training example {record['copy_training_index']}"
        return f"copies {100 * record['copy_score']:.0f} % of {name} from {record['copy_offset_seconds']:.2f} s"
    name = record.get("melody_training_file") or f"training example {record['melody_training_index']}"
    shift = record.get("melody_transposition") or 0
    key = f", {shift:+d} semitones" if shift else ""
    where, similarity = record["melody_offset_seconds"], record["melody_similarity"]
    return f"melody of {name} from {where:.2f} s (r = {similarity:.2f}{key})"


def _clip(record: dict[str, Any]) -> tuple[str, str, int, str, str | None, str | None]:
    """A clip of the Listen table: ``(wav, spectrogram, sample, what was measured, what it copies, the copied
    excerpt's wav)``."""
    meta = " · ".join(
        x
        for x in (
            f"{record['duration']:.2f} s",
            f"{record['estimated_bpm']:g} bpm" if record.get("estimated_bpm") else "",
            record.get("estimated_key") or "",
            f"{record['loudness_lufs']:.1f} LUFS" if record.get("loudness_lufs") is not None else "silent",
        )
        if x
    )
    copied = _copy_text(record)
    excerpt = record.get("copy_excerpt") if copied else None
    return record["path"], record["spectrogram"], record["sample"], meta, copied, excerpt


def _comparison_rows(comparison: dict[str, Any]) -> list[tuple[str, list[tuple[str, str]]]]:
    """One row per compared metric (in the order the first model lists them), one cell per model."""
    keys: list[str] = []
    for block in comparison.values():
        keys += [k for k in block["metrics"] if k not in keys]
    rows = []
    for key in keys:
        entries = [block["metrics"].get(key) for block in comparison.values()]
        label = next(e["label"] for e in entries if e)
        cells = []
        for entry in entries:
            if entry is None:
                cells.append(("–", ""))
                continue
            text = describe(entry).removeprefix(entry["label"]).strip()
            cells.append((text, entry.get("verdict") or ("changed" if entry["changed"] else "")))
        rows.append((label, cells))
    return rows


@functools.cache
def _template() -> jinja2.Template:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent), autoescape=True, trim_blocks=True, lstrip_blocks=True
    )
    return environment.get_template(TEMPLATE)


def render_report(metrics: dict[str, Any], records: list[dict[str, Any]]) -> str:
    """The HTML text of the report (see the module docstring)."""
    settings = metrics["settings"]
    names = list(metrics["models"])
    base_name = names[0]
    blocks = metrics["models"]
    sections = []
    for title, rows in _rows(metrics):
        table = []
        for label, getter, better, spec in rows:
            base_value = _safe(getter, blocks[base_name])
            table.append(
                (label, [_cell(_safe(getter, blocks[n]), base_value, better, spec, n == base_name) for n in names])
            )
        sections.append((title, table))
    by_cell: dict[tuple[int, str], list[tuple[Any, ...]]] = {}
    for record in records:
        by_cell.setdefault((record["prompt_index"], record["model"]), []).append(_clip(record))
    listen = [
        (index, prompt["text"], [by_cell.get((index, name), []) for name in names])
        for index, prompt in enumerate(settings["prompts"])
    ]
    comparison = metrics.get("comparison") or {}
    first = next(iter(comparison.values()), {})
    clips = len(settings["prompts"]) * settings["num_samples"]
    checks = metrics.get("checks", {}).get("adapter_disabled_ce_max_abs_diff_from_base") or {}
    return _template().render(
        style=_STYLE,
        script=_SCRIPT,
        base=base_name,
        names=names,
        columns=len(names) + 1,
        settings=settings,
        verdicts=[
            {"model": name, "text": block["verdict"], "steady": block["verdict"].startswith("no detectable change")}
            for name, block in comparison.items()
        ],
        bootstrap=first.get("bootstrap", {}),
        clips=clips,
        few_clips=clips < MIN_CLIPS,
        min_clips=MIN_CLIPS,
        compared=list(comparison),
        comparison_rows=_comparison_rows(comparison),
        left_out=metrics.get("left_out", []),
        sections=sections,
        checks=list(checks.items()),
        frechet_note=metrics["notes"]["frechet"],
        listen=listen,
    )


def write_report(out_dir: Path, metrics: dict[str, Any], records: list[dict[str, Any]]) -> Path:
    """Write ``out_dir/report.html``; returns its path."""
    path = Path(out_dir) / "report.html"
    path.write_text(render_report(metrics, records), encoding="utf-8")
    return path
