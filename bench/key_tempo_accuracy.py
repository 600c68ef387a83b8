"""Accuracy of the tempo and key estimators on the corpora of ``bench/key_tempo_corpora.py``.

Usage::

    python bench/key_tempo_accuracy.py CORPUS_DIR [--analysis-module PATH] [--json OUT.json] [--seconds S]

prints, per corpus, genre and instrumentation and for the ``tune`` / ``test`` splits: tempo within 4 % (the exact
octave), tempo within 4 % allowing a factor 2 or 3, key with its mode exactly right, and the MIREX weighted key
score; then how the confidence thresholds of :mod:`musicgen_lora.analysis` sort right from wrong estimates.
``--analysis-module`` measures another version of ``analysis.py`` (e.g. ``git show REV:musicgen_lora/analysis.py``
saved to a file: the "before" column of bench/RESULTS.md).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from musicgen_lora import analysis as current  # noqa: E402


def load_module(path: str | None):
    """``musicgen_lora.analysis``, or the module at ``path``."""
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
        if row.get("key"):
            score, relation = (
                module.key_score((key.tonic, key.mode), module.parse_key(row["key"])) if key else (0.0, "none")
            )
            result.update(est_key=key and key.key, key_conf=key and float(getattr(key, "confidence", np.nan)),
                          key_hit=score == 1.0, key_score=score, key_relation=relation)  # fmt: skip
        results.append(result)
    return results


def summarise(results: list[dict]) -> dict[str, float | int]:
    """Tempo and key accuracy of a group of result rows."""
    tempo = [r for r in results if "tempo_hit" in r]
    key = [r for r in results if "key_hit" in r]
    out: dict[str, float | int] = {"tempo_n": len(tempo), "key_n": len(key)}
    if tempo:
        out["tempo_4pct"] = float(np.mean([r["tempo_hit"] for r in tempo]))
        out["tempo_4pct_any_octave"] = float(np.mean([r["tempo_hit_any_octave"] for r in tempo]))
    if key:
        out["key_exact"] = float(np.mean([r["key_hit"] for r in key]))
        out["key_mirex"] = float(np.mean([r["key_score"] for r in key]))
    return out


def table(results: list[dict]) -> str:
    """A markdown table: every corpus, genre and instrumentation, split into tune / test / all."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in results:
        for split in (r["split"], "all"):
            groups[("ALL", split)].append(r)
            groups[(f"corpus {r['corpus']}", split)].append(r)
            groups[(f"genre {r['genre']}", split)].append(r)
            groups[(f"instr. {r['instrumentation']}", split)].append(r)
    lines = [
        "| group | split | tempo n | tempo 4 % | any octave | key n | key exact | MIREX |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (group, split), rows in sorted(groups.items(), key=lambda item: (item[0][0] != "ALL", item[0][0], item[0][1])):
        s = summarise(rows)

        def pct(name):
            return f"{100 * s[name]:.0f} %" if name in s else "-"

        mirex = f"{s['key_mirex']:.3f}" if "key_mirex" in s else "-"
        lines.append(f"| {group} | {split} | {s['tempo_n']} | {pct('tempo_4pct')} | {pct('tempo_4pct_any_octave')} | "
                     f"{s['key_n']} | {pct('key_exact')} | {mirex} |")  # fmt: skip
    return "\n".join(lines)


def threshold_report(results: list[dict], field: str, hit: str, thresholds) -> str:
    """For each threshold: the share of wrong estimates removed and of right ones lost when fields below it are dropped."""
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
    parser.add_argument("corpus_dir", type=Path)
    parser.add_argument("--analysis-module", default=None, help="path of another analysis.py to measure")
    parser.add_argument("--json", type=Path, default=None, help="write the per-excerpt results here")
    parser.add_argument("--seconds", type=float, default=None, help="use only the first S seconds of each excerpt")
    args = parser.parse_args(argv)
    module = load_module(args.analysis_module)
    results = evaluate(args.corpus_dir, module, args.seconds)
    print(table(results))
    times = [r["seconds_taken"] for r in results]
    print(f"\ntime per excerpt (tempo + key): median {np.median(times):.3f} s, max {max(times):.3f} s")
    if hasattr(module, "TEMPO_CONFIDENCE_THRESHOLD"):
        print(
            "\n"
            + threshold_report(
                results, "tempo_conf", "tempo_hit", sorted({0.1, 0.2, 0.3, 0.4, 0.5, module.TEMPO_CONFIDENCE_THRESHOLD})
            )
        )
        print(
            "\n"
            + threshold_report(
                results, "key_conf", "key_hit", sorted({0.1, 0.2, 0.3, 0.4, 0.5, module.KEY_CONFIDENCE_THRESHOLD})
            )
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return summarise(results)


if __name__ == "__main__":
    print(json.dumps(main()))
