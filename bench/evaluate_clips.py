"""How many clips does evaluate.py need, and what does a clip cost? (issue 29, items 3 and 5)

    python bench/evaluate_clips.py intervals --base_model TINY --model final=RUN --model half=HALF \\
        --corpus CORPUS --data_cache_dir CACHE --out bench/evaluate_intervals.json
    python bench/evaluate_clips.py speed --base_model MODEL_DIR --duration 8 --clips 8 --out speed.json
    python bench/evaluate_clips.py speed --architecture small --duration 8 --clips 8   # a random real-size small

``intervals`` renders a pool of prompts x samples with the base model, again with other seeds (``base_reseeded``:
the base model's own sampling noise, an adapter that changes nothing but its draws), and with each adapter, through
evaluate.py's own rendering and measurement; then draws many evaluations of P prompts x S samples from the pool (a
draw is an evaluation with other seeds) and compares each with the base as evaluate.py does. Per number of clips it
reports each headline metric's median interval width, how often the draws agree on the verdict (each headline
metric up, down or unchanged: the share of draws whose verdict is the most common one), and how often
``base_reseeded`` is said to have changed anything (false alarms).

``speed`` times evaluate.py's rendering and measurement (generation batched, WAV, spectrogram, every per-clip metric,
the EnCodec latents) per clip, for the base model alone, with the generation batch given.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pickle
import platform
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch

from musicgen_lora.demo.tiny import build_tiny_musicgen
from musicgen_lora.evaluate.comparison import Comparison, Evidence
from musicgen_lora.evaluate.context import set_up
from musicgen_lora.evaluate.data import DatasetSpec, EvalSettings
from musicgen_lora.evaluate.frechet import ClipStats
from musicgen_lora.evaluate.metrics import pairwise_distance
from musicgen_lora.evaluate.models import BASE, ModelSpec, classify_model_dir
from musicgen_lora.evaluate.prompts import Prompt
from musicgen_lora.evaluate.run import ModelOutputs, evaluate_model, reference_gaussians
from musicgen_lora.logs import progress

GENRES = ["lofi hip hop", "techno", "jazz trio", "ambient pads", "punk rock", "drum and bass", "folk guitar",
          "orchestral", "reggae", "synthwave", "blues", "house", "trap", "bossa nova", "metal",
          "piano ballad"]  # fmt: skip
KEYS = ["A minor", "C major", "F minor", "E minor", "G major", "D minor", "B minor", "E major"]
SIZES = [(2, 2), (4, 2), (2, 4), (4, 4), (8, 2), (2, 8), (8, 4), (4, 8), (16, 2), (8, 8), (16, 4)]


def _prompts(count: int) -> list[Prompt]:
    return [Prompt.parse(f"{GENRES[i % len(GENRES)]}, {70 + 7 * i} bpm, {KEYS[i % len(KEYS)]}") for i in range(count)]


def _subset(output: ModelOutputs, prompts: list[int], samples: list[int], pool_samples: int,
            scale: np.ndarray) -> Evidence:  # fmt: skip
    """The evidence an evaluation of ``prompts`` x ``samples`` of the pool would have had."""
    clips = [p * pool_samples + s for p in prompts for s in samples]
    stats = {
        name: ClipStats(found.counts[clips], found.sums[clips], found.outers[clips])
        for name, found in output.clip_stats.items()
    }
    diversity = [
        pairwise_distance([output.clips[p * pool_samples + s].vector / scale for s in samples]) for p in prompts
    ]
    return Evidence([output.clips[i].record for i in clips], output.windows, diversity, stats)


def _width(entry: dict[str, Any]) -> float:
    low, high = entry.get("relative_ci95") or entry["ci95"]
    return float(high - low)


def _pool(args: argparse.Namespace) -> tuple[dict[str, ModelOutputs], dict[str, Any], float]:
    """Every model's clips of the pool, the references and the seconds the rendering took (read from
    ``--pool_cache`` when it exists, else rendered and written there)."""
    cache = Path(args.pool_cache) if args.pool_cache else None
    outputs: dict[str, ModelOutputs] = {}
    rendering = 0.0
    if cache is not None and cache.is_file():  # rendered before: only the models not in it are rendered now
        with cache.open("rb") as handle:
            outputs, references, rendering = pickle.load(handle)
        if all(item.split("=", 1)[0] in outputs for item in args.model):
            return outputs, references, rendering
    pool_prompts, pool_samples = args.pool_prompts, args.pool_samples
    with tempfile.TemporaryDirectory() as folder:
        settings = EvalSettings(
            base_model=args.base_model,
            models=[classify_model_dir(*item.split("=", 1)) for item in args.model],
            prompts=_prompts(pool_prompts),
            output_dir=Path(folder),
            duration=args.duration,
            num_samples=pool_samples,
            eval_datasets=[DatasetSpec("eval", args.corpus, None)],
            train_dataset=DatasetSpec("train", args.corpus, None),
            max_eval_samples=args.max_clips,
            max_train_samples=args.max_clips,
            data_cache_dir=args.data_cache_dir,
            melody_check=False,
            generation_batch_size=16,
        )
        context = set_up(settings)
        reseeded = dataclasses.replace(context, settings=dataclasses.replace(settings, seed=100_000))
        started = time.perf_counter()
        specs = [(context, ModelSpec(BASE, None)), (reseeded, ModelSpec("base_reseeded", None)),
                 *[(context, spec) for spec in settings.models]]  # fmt: skip
        specs = [(own, spec) for own, spec in specs if spec.name not in outputs]
        with progress(total=len(specs) * pool_prompts, desc="Rendering the pool", unit="prompt") as bar:
            for own_context, spec in specs:
                outputs[spec.name] = evaluate_model(own_context, spec, bar)
        rendering += time.perf_counter() - started
    pool = (outputs, reference_gaussians(context), rendering)
    if cache is not None:
        with cache.open("wb") as handle:
            pickle.dump(pool, handle)
    return pool


def intervals(args: argparse.Namespace) -> dict[str, Any]:
    pool_prompts, pool_samples = args.pool_prompts, args.pool_samples
    outputs, references, rendering = _pool(args)
    scale = np.stack([clip.vector for output in outputs.values() for clip in output.clips]).std(axis=0) + 1e-9
    rng = np.random.default_rng(args.seed)
    rows = []
    for prompts_count, samples_count in [s for s in SIZES if s[0] <= pool_prompts and s[1] <= pool_samples]:
        draws: dict[str, list[dict[str, Any]]] = {name: [] for name in outputs if name != BASE}
        for _ in range(args.draws):
            prompts = sorted(rng.choice(pool_prompts, prompts_count, replace=False).tolist())
            samples = sorted(rng.choice(pool_samples, samples_count, replace=False).tolist())
            base = _subset(outputs[BASE], prompts, samples, pool_samples, scale)
            comparison = Comparison(base, references, prompts_count, samples_count, args.resamples, seed=0)
            for name in draws:
                draws[name].append(comparison.compare(_subset(outputs[name], prompts, samples, pool_samples, scale)))
        rows.append({"prompts": prompts_count, "samples": samples_count, "clips": prompts_count * samples_count,
                     "models": {name: _summary(blocks) for name, blocks in draws.items()}})  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    return {
        "machine": _machine(),
        "pool": {
            "prompts": pool_prompts,
            "samples": pool_samples,
            "duration": args.duration,
            "rendering_seconds": round(rendering, 1),
        },  # fmt: skip
        "draws": args.draws,
        "resamples": args.resamples,
        "sizes": rows,
    }


def _summary(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    """Interval widths and verdict agreement over the draws of one model at one size."""
    headline = [key for key, entry in blocks[0]["metrics"].items() if entry["headline"]]
    verdicts = [tuple((e := b["metrics"].get(k)) and e["direction"] for k in headline) for b in blocks]
    modal, count = Counter(verdicts).most_common(1)[0]
    per_metric = {}
    for index, key in enumerate(headline):
        directions = Counter(v[index] for v in verdicts)
        per_metric[key] = {
            "median_width": float(np.median([_width(b["metrics"][key]) for b in blocks if key in b["metrics"]])),
            "relative": "relative_ci95" in blocks[0]["metrics"][key],
            "agreement": directions.most_common(1)[0][1] / len(verdicts),
            "modal": directions.most_common(1)[0][0],
        }
    return {
        "verdict_agreement": count / len(verdicts),
        "modal_verdict": dict(zip(headline, modal, strict=True)),
        "any_change": sum(1 for v in verdicts if any(v)) / len(verdicts),
        "metrics": per_metric,
    }


def speed(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        model_dir = args.base_model
        if model_dir is None:  # a random model of a real checkpoint's size, built here (no download)
            model, processor = build_tiny_musicgen(architecture=args.architecture, fit_codebooks=False)
            model_dir = str(Path(folder) / f"random-{args.architecture}")
            model.save_pretrained(model_dir)
            processor.save_pretrained(model_dir)
            del model
        results = []
        for batch in args.batch_sizes:
            settings = EvalSettings(
                base_model=model_dir, models=[], prompts=_prompts(args.clips), output_dir=Path(folder) / f"b{batch}",
                duration=args.duration, num_samples=1, generation_batch_size=batch, device=args.device,
            )  # fmt: skip
            context = set_up(settings)
            started, cpu = time.perf_counter(), time.process_time()
            with progress(total=args.clips, desc=f"batch {batch}", unit="prompt") as bar:
                evaluate_model(context, ModelSpec(BASE, None), bar)
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
            # CPU seconds (all threads of this process) say what a clip costs when the machine is shared; wall
            # seconds what it took here, with the load average of _machine()
            results.append({"generation_batch_size": batch, "clips": args.clips, "seconds": round(seconds, 1),
                            "seconds_per_clip": round(seconds / args.clips, 2),
                            "cpu_seconds_per_clip": round(cpu / args.clips, 2)})  # fmt: skip
            print(json.dumps(results[-1]), flush=True)
            del context
    return {"machine": _machine(), "model": args.base_model or f"random {args.architecture}",
            "duration": args.duration, "results": results}  # fmt: skip


def _machine() -> dict[str, Any]:
    return {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
            "torch": torch.__version__, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "load_average": [round(x, 1) for x in os.getloadavg()]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    widths = commands.add_parser("intervals")
    widths.add_argument("--base_model", required=True)
    widths.add_argument("--model", action="append", default=[], metavar="NAME=DIR")
    widths.add_argument("--corpus", required=True, help="reference and training audio (a folder)")
    widths.add_argument("--data_cache_dir")
    widths.add_argument("--max_clips", type=int, default=4)
    widths.add_argument("--pool_prompts", type=int, default=16)
    widths.add_argument("--pool_samples", type=int, default=8)
    widths.add_argument("--duration", type=float, default=1.5)
    widths.add_argument("--draws", type=int, default=20)
    widths.add_argument("--resamples", type=int, default=1000)
    widths.add_argument("--seed", type=int, default=0)
    widths.add_argument("--pool_cache", help="keep the rendered pool in this pickle (reused when it exists)")
    clock = commands.add_parser("speed")
    clock.add_argument("--base_model", help="a model folder (default: build a random one of --architecture)")
    clock.add_argument("--architecture", default="small")
    clock.add_argument("--duration", type=float, default=8.0)
    clock.add_argument("--clips", type=int, default=8)
    clock.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 8])
    clock.add_argument("--device")
    for sub in (widths, clock):
        sub.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()
    result = intervals(args) if args.command == "intervals" else speed(args)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
