"""Accuracy of the tempo and key estimators on the corpora of ``bench/key_tempo_corpora.py``.

Usage::

    python bench/key_tempo_accuracy.py CORPUS_DIR [--analysis-module PATH] [--json OUT.json] [--seconds S]

prints, per corpus, genre and instrumentation and for the ``tune`` / ``test`` splits: tempo within 4 % (the exact
octave), tempo within 4 % allowing a factor 2 or 3, key with its mode exactly right, and the MIREX weighted key
score; then how the confidence thresholds of :mod:`musicgen_lora.audio.tempo` and :mod:`musicgen_lora.audio.key`
sort right from wrong estimates; and what captions say of the tempo (one value, two where the tempo is in doubt, or
none below the confidence threshold) and how often that is right. ``--analysis-module`` measures another version of
the estimators: one file with ``estimate_tempo``, ``estimate_key``, ``tempo_error``, ``key_score`` and ``parse_key``
(e.g. ``git show e2d5858:musicgen_lora/audio/analysis.py``, the code before this work, saved to a file: the "before"
column of bench/RESULTS.md).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from musicgen_lora.audio import analysis  # noqa: E402
from musicgen_lora.audio import key as key_module  # noqa: E402
from musicgen_lora.audio import tempo as tempo_module  # noqa: E402

# today's estimators, seen as one module (the shape of the single file that --analysis-module loads)
current = SimpleNamespace(
    estimate_tempo=tempo_module.estimate_tempo,
    estimate_key=key_module.estimate_key,
    tempo_error=analysis.tempo_error,
    key_score=analysis.key_score,
    parse_key=analysis.parse_key,
    TEMPO_CONFIDENCE_THRESHOLD=tempo_module.TEMPO_CONFIDENCE_THRESHOLD,
    KEY_CONFIDENCE_THRESHOLD=key_module.KEY_CONFIDENCE_THRESHOLD,
)


def load_module(path: str | None):
    """Today's estimators, or the module at ``path``."""
    if not path:
        return current
    spec = importlib.util.spec_from_file_location("analysis_under_test", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["analysis_under_test"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def evaluate(
    corpus_dir: Path, module=current, seconds: float | None = None, rows: list[dict] | None = None
) -> list[dict]:
    """One result row per excerpt: the truth, the estimates, their confidences, hits and the time taken."""
    corpus_dir = Path(corpus_dir)
    if rows is None:
        rows = [json.loads(line) for line in (corpus_dir / "manifest.jsonl").read_text().splitlines()]
    results = []
    for row in rows:
        audio, sr = sf.read(corpus_dir / row["file"], dtype="float32")
        if seconds:
            audio = audio[: int(seconds * sr)]
        start = time.perf_counter()
        tempo = module.estimate_tempo(audio, sr) if row.get("bpm") else None
        key = module.estimate_key(audio, sr) if row.get("key") else None
        result = dict(row, seconds_taken=time.perf_counter() - start)
        if row.get("bpm"):
            error = module.tempo_error(tempo.bpm, row["bpm"]) if tempo else None
            result.update(est_bpm=tempo and tempo.bpm, tempo_conf=tempo and float(getattr(tempo, "confidence", np.nan)),
                          tempo_hit=bool(error and error["rel_error"] <= 0.04),
                          tempo_hit_any_octave=bool(error and error["rel_error_any_octave"] <= 0.04))  # fmt: skip
            result.update(caption_tempo(tempo, row["bpm"], getattr(module, "TEMPO_CONFIDENCE_THRESHOLD", 0.0)))
        if row.get("key"):
            score, relation = (
                module.key_score((key.tonic, key.mode), module.parse_key(row["key"])) if key else (0.0, "none")
            )
            result.update(est_key=key and key.key, key_conf=key and float(getattr(key, "confidence", np.nan)),
                          key_hit=score == 1.0, key_score=score, key_relation=relation)  # fmt: skip
        results.append(result)
    return results


def caption_tempo(tempo, truth: float, threshold: float) -> dict:
    """What a caption says of the tempo (the values it names: one, two where the tempo is in doubt, none below
    ``threshold``) and whether it is right: one of the values it names within 4 % of ``truth``; a caption that leaves
    the tempo out is not right."""
    if tempo is None or getattr(tempo, "confidence", 1.0) < threshold:
        named = []
    else:
        named = [tempo.bpm] + ([tempo.alternative] if getattr(tempo, "alternative", None) else [])
    return {
        "caption_bpms": named,
        "caption_two_valued": len(named) == 2,
        "caption_left_out": not named,
        "caption_hit": any(abs(value / truth - 1) <= 0.04 for value in named),
    }


def grouped(results: list[dict], kinds) -> dict[tuple[str, str], list[dict]]:
    """The result rows by (group, split): ALL and each value of each of ``kinds``, per split and for "all"."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in results:
        for split in (r["split"], "all"):
            groups[("ALL", split)].append(r)
            for kind in kinds:
                groups[(f"{kind} {r[kind]}", split)].append(r)
    return groups


def caption_table(results: list[dict], kinds=("corpus",)) -> str:
    """A markdown table of what captions say of the tempo, per group and split: single value right (the estimate's
    one value, as before), caption right (one of the values it names), two-valued, tempo left out."""
    groups = grouped([r for r in results if "caption_hit" in r], kinds)
    lines = [
        "| group | split | n | single value within 4 % | caption right | two-valued | tempo left out |",
        "|---|---|---|---|---|---|---|",
    ]
    for (group, split), rows in sorted(groups.items(), key=lambda item: (item[0][0] != "ALL", item[0][0], item[0][1])):
        cells = [f"{100 * np.mean([r[name] for r in rows]):.1f} %"
                 for name in ("tempo_hit", "caption_hit", "caption_two_valued", "caption_left_out")]  # fmt: skip
        lines.append(f"| {group} | {split} | {len(rows)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summarise(results: list[dict]) -> dict[str, float | int]:
    """Tempo and key accuracy of a group of result rows."""
    tempo = [r for r in results if "tempo_hit" in r]
    key = [r for r in results if "key_hit" in r]
    out: dict[str, float | int] = {"tempo_n": len(tempo), "key_n": len(key)}
    if tempo:
        out["tempo_4pct"] = float(np.mean([r["tempo_hit"] for r in tempo]))
        out["caption_right"] = float(np.mean([r["caption_hit"] for r in tempo]))
        out["caption_two_valued"] = float(np.mean([r["caption_two_valued"] for r in tempo]))
        out["tempo_4pct_any_octave"] = float(np.mean([r["tempo_hit_any_octave"] for r in tempo]))
    if key:
        out["key_exact"] = float(np.mean([r["key_hit"] for r in key]))
        out["key_mirex"] = float(np.mean([r["key_score"] for r in key]))
    return out


def table(results: list[dict], before: list[dict] | None = None, kinds=("corpus", "genre", "instrumentation")) -> str:
    """A markdown table: all, then every corpus, genre and instrumentation, split into tune / test / all; with
    ``before`` (results of another version on the same excerpts), its figures in parentheses."""
    earlier = {r["id"]: r for r in before or []}
    groups = grouped(results, kinds)
    lines = [
        "| group | split | tempo n | tempo 4 % | any octave | key n | key exact | MIREX |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (group, split), rows in sorted(groups.items(), key=lambda item: (item[0][0] != "ALL", item[0][0], item[0][1])):
        now = summarise(rows)
        then = summarise([earlier[r["id"]] for r in rows if r["id"] in earlier]) if earlier else {}
        cells = []
        for name, percent in (("tempo_4pct", True), ("tempo_4pct_any_octave", True), ("key_exact", True),
                              ("key_mirex", False)):  # fmt: skip
            text = "-" if name not in now else (f"{100 * now[name]:.0f} %" if percent else f"{now[name]:.3f}")
            if name in then:
                text += f" ({100 * then[name]:.0f} %)" if percent else f" ({then[name]:.3f})"
            cells.append(text)
        tempo_cells, key_cells = " | ".join(cells[:2]), " | ".join(cells[2:])
        lines.append(f"| {group} | {split} | {now['tempo_n']} | {tempo_cells} | {now['key_n']} | {key_cells} |")
    return "\n".join(lines)


def threshold_report(results: list[dict], field: str, hit: str, thresholds) -> str:
    """For each threshold: how many wrong estimates are removed and right ones lost when fields below it are dropped."""
    rows = [r for r in results if r.get(field) is not None and hit in r]
    right = [r for r in rows if r[hit]]
    wrong = [r for r in rows if not r[hit]]
    lines = [f"| {field} threshold | wrong removed | right lost | accuracy of kept | kept |", "|---|---|---|---|---|"]
    for t in thresholds:
        removed = sum(r[field] < t for r in wrong)
        lost = sum(r[field] < t for r in right)
        kept = len(rows) - removed - lost
        accuracy = (len(right) - lost) / kept if kept else float("nan")
        lines.append(
            f"| {t:.2f} | {removed}/{len(wrong)} | {lost}/{len(right)} | {100 * accuracy:.1f} % | {kept}/{len(rows)} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus_dirs", type=Path, nargs="+", help="folders written by key_tempo_corpora.py")
    parser.add_argument("--analysis-module", default=None, help="path of another version of the estimators")
    parser.add_argument("--json", type=Path, default=None, help="write the per-excerpt results here")
    parser.add_argument("--before", type=Path, default=None, help="per-excerpt results (--json) of another version")
    parser.add_argument("--seconds", type=float, default=None, help="use only the first S seconds of each excerpt")
    args = parser.parse_args(argv)
    module = load_module(args.analysis_module)
    results = [r for folder in args.corpus_dirs for r in evaluate(folder, module, args.seconds)]
    before = json.loads(args.before.read_text()) if args.before else None
    print(table(results, before))
    print("\n" + caption_table(results))
    times = [r["seconds_taken"] for r in results]
    print(f"\ntime per excerpt (tempo + key): median {np.median(times):.3f} s, max {max(times):.3f} s")
    if hasattr(module, "TEMPO_CONFIDENCE_THRESHOLD"):
        for field, hit, threshold in (
            ("tempo_conf", "tempo_hit", module.TEMPO_CONFIDENCE_THRESHOLD),
            ("key_conf", "key_hit", module.KEY_CONFIDENCE_THRESHOLD),
        ):
            print("\n" + threshold_report(results, field, hit, sorted({0.1, 0.2, 0.3, 0.4, 0.5, threshold})))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return summarise(results)


if __name__ == "__main__":
    print(json.dumps(main()))
