"""The memory planner's measurements: the peak memory of real training steps, each configuration in a fresh process,
kept in ``bench/memory_measurements.json`` beside the planner's prediction (the tests hold the planner to them).

    python -m musicgen_lora.bench.memory [--device cpu|cuda] [--only NAME ...] [--out bench/memory_measurements.json]

On the CPU the measured figure is the whole process' peak resident memory (``VmHWM``: loading, training steps, and
what torch and the libraries hold), which ``musicgen_lora plan --device cpu`` predicts; on a GPU it is
``torch.cuda.max_memory_allocated`` from the start of training (``--device cuda``). Models are random with the real
architectures (:func:`~.cases.save_random_model`), saved as fp32 folders and loaded as training loads them; each case
runs two optimizer steps (the second holds the optimizer state and the peak)."""

from __future__ import annotations

import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CommandLineParser, UserError, exit_on_user_error
from ..logs import setup_logging
from ..plan.architecture import architecture_of
from ..plan.memory import plan_memory, raw_parts, settings_of
from .cases import Case, case_argv, run_case_in_subprocess, save_random_model
from .suite import check_device, machine_info

logger = logging.getLogger(__name__)

GIB = 2**30
HUB_IDS = {"tiny": "musicgen-lora-tiny", "small": "facebook/musicgen-small", "medium": "facebook/musicgen-medium",
           "large": "facebook/musicgen-large"}  # fmt: skip


def torch_cuda_available() -> bool:
    """Whether this machine has a CUDA GPU (the ``--device cuda`` path needs one)."""
    return torch.cuda.is_available()


def memory_cases(device: str, quick: bool = False) -> list[Case]:
    """The measured configurations: precision, checkpointing, batch, duration, quantization and optimizer varied on
    musicgen-small, and musicgen-medium with checkpointing (bf16, nf4); ``quick``: two tiny cases (a smoke test)."""
    one = dict(steps=1, warmup=1, bare=False, count_flops=False, device=device)
    if quick:
        return [
            Case("tiny bf16", architecture="tiny", seconds=2.0, batch_size=2, **one),
            Case("tiny bf16 nf4", architecture="tiny", seconds=2.0, batch_size=2, quantize="nf4", **one),
        ]
    if device == "cpu":
        return cpu_memory_cases(one)
    small = dict(architecture="small", seconds=30.0, **one)
    medium = dict(architecture="medium", seconds=30.0, checkpointing=True, **one)
    return [
        Case("small bf16", **small),
        Case("small fp32", precision="fp32", **small),
        Case("small bf16 checkpointing batch 2", checkpointing=True, **{**small, "batch_size": 2}),
        Case("small bf16 nf4", quantize="nf4", **small),
        Case("small bf16 int8", quantize="int8", **small),
        Case("small bf16 adamw_bnb_8bit", optim="adamw_bnb_8bit", **small),
        Case("small bf16 batch 4 x 5 s", **{**small, "batch_size": 4, "seconds": 5.0}),
        Case("medium bf16 checkpointing", **medium),
        Case("medium bf16 nf4 checkpointing", quantize="nf4", **medium),
    ]


def cpu_memory_cases(one: dict[str, Any]) -> list[Case]:
    """The CPU's cases, in fp32: when they were measured, this shared host's bf16 matmuls ran 57x slower than fp32
    (a 1024^3 matmul: 22 s vs 0.39 s, other jobs holding the cores), so bf16 steps of the real sizes did not finish
    in 30 minutes; the bf16 configurations come from the benchmark suite's run (bench/results.json). Short windows
    (5 s) keep a real-size step within minutes: the peak, not the speed, is measured. Of the medium cases, the
    unquantized and 8-bit AdamW ones are kept; the nf4 and int8 ones measured far above the planner (bench/RESULTS.md,
    *Memory planner*) and are not kept in the file the tests hold the planner to."""
    small = dict(architecture="small", precision="fp32", seconds=5.0, **one)
    medium = dict(small, architecture="medium", checkpointing=True)
    return [
        Case("small fp32 nf4 5 s", quantize="nf4", **small),
        Case("small fp32 batch 4 x 5 s", **{**small, "batch_size": 4}),
        Case("small fp32 adamw_bnb_8bit 10 s", optim="adamw_bnb_8bit", **{**small, "seconds": 10.0}),
        Case("small fp32 int8 5 s", quantize="int8", **small),
        Case("small fp32 int8 batch 2 x 10 s", quantize="int8", **{**small, "batch_size": 2, "seconds": 10.0}),
        Case("small fp32 nf4 batch 2 x 10 s", quantize="nf4", **{**small, "batch_size": 2, "seconds": 10.0}),
        Case("small fp32 checkpointing 30 s", checkpointing=True, **{**small, "seconds": 30.0}),
        Case("small fp32 nf4 checkpointing batch 2", quantize="nf4", checkpointing=True, **{**small, "batch_size": 2}),
        Case("medium fp32 checkpointing 5 s", **medium),
        Case("medium fp32 nf4 checkpointing 5 s", quantize="nf4", **medium),
        Case("medium fp32 int8 checkpointing 5 s", quantize="int8", **medium),
        Case("medium fp32 adamw_bnb_8bit checkpointing 5 s", optim="adamw_bnb_8bit", **medium),
    ]


def plan_config(case: Case) -> dict[str, Any]:
    """The case as the planner reads a config: the training options of :func:`~.cases.case_argv`, with the model
    named by its Hub id (the planner's table) instead of the random folder."""
    argv = case_argv(case, Path("out"))
    config: dict[str, Any] = {}
    for key, value in zip(argv[0::2], argv[1::2], strict=True):
        config[key.removeprefix("--")] = value
    if HUB_IDS.get(case.architecture):
        config["model_name_or_path"] = HUB_IDS[case.architecture]
    return config


def measured_bytes(result: dict[str, Any], device: str) -> int | None:
    """The figure the planner predicts: the whole process' peak RSS on the CPU, peak allocated on a GPU."""
    key = "peak_allocated_bytes" if device == "cuda" else "peak_rss_process_bytes"
    return result.get(key)


def run_memory_cases(
    cases: list[Case], device: str, out: Path | None, timeout: float = 1800.0, models_dir: Path | None = None
) -> dict[str, Any]:
    """Measure each case in a fresh process; returns (and writes to ``out`` after each case) the records.

    ``models_dir``: keep the saved random models there and reuse those already saved (building and saving one takes
    minutes: musicgen-medium's is a 6.4 GB file); by default they are saved in a temporary folder.
    """
    results: dict[str, Any] = {"device": device, "machine": machine_info(device), "cases": []}
    if out is not None and out.is_file():  # keep earlier cases' records (``--only`` reruns some) and the notes
        kept = json.loads(out.read_text())
        results = {**kept, **results, "cases": [c for c in kept["cases"] if c["name"] not in {k.name for k in cases}]}
    with tempfile.TemporaryDirectory(prefix="musicgen-memory-") as workdir:
        folder = models_dir or Path(workdir)
        saved: dict[str, str] = {}
        for case in cases:
            if case.architecture not in saved:
                kept_model = folder / f"random-{case.architecture}"
                if (kept_model / "config.json").is_file():
                    saved[case.architecture] = str(kept_model)
                else:
                    saved[case.architecture] = str(save_random_model(case.architecture, folder))
            case.model_dir = saved[case.architecture]
            logger.info("memory: %s ...", case.name)
            start = time.perf_counter()
            result = run_case_in_subprocess(case, timeout)
            config = plan_config(case)
            record = {"name": case.name, "config": config, "device": device}
            record["date_utc"] = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
            record["measured_bytes"] = measured_bytes(result, device)
            record["error"] = result.get("error")
            record["wall_s"] = round(time.perf_counter() - start, 1)
            record["source"] = "python -m musicgen_lora.bench.memory"
            results["cases"].append(record)
            if out is not None:
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    return results


def suite_records(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The memory figures of a benchmark-suite run (``python -m musicgen_lora.bench``'s results.json: the same
    instrument, each case in a fresh process) as records of this file, marked with their source."""
    records = []
    for result in results.get("cases", []):
        case_options = result["case"]
        # torch.compile's peak is the compiler's; PEFT's own dropout (fast_lora off) is no option a config can set
        if not result.get("peak_rss_process_bytes") or case_options["compile"] or not case_options["fast_lora"]:
            continue
        case = Case(**result["case"])
        records.append({
            "name": f"{case.architecture} {case.name} (suite)", "config": plan_config(case), "device": "cpu",
            "date_utc": results["machine"]["date_utc"], "measured_bytes": result["peak_rss_process_bytes"],
            "source": "bench/results.json (python -m musicgen_lora.bench)",
        })  # fmt: skip
    return records


FITTED = ("frozen_weights", "activations", "lora_dropout", "residual_dropout")


def fit_calibration(records: list[dict[str, Any]], device: str) -> dict[str, float]:
    """The multipliers of the planner's fitted terms (:data:`FITTED`) that best match ``records`` (least squares on
    the bytes; the other terms count as they are): what plan/memory.py's CALIBRATION holds."""
    rows, targets = [], []
    for record in records:
        if record["device"] != device or not record.get("measured_bytes"):
            continue
        settings = settings_of(record["config"], device)
        raw = raw_parts(architecture_of(settings.model), settings, device)
        rows.append([raw[name] for name in FITTED])
        targets.append(record["measured_bytes"] - sum(v for k, v in raw.items() if k not in FITTED))
    solution, *_ = np.linalg.lstsq(np.array(rows), np.array(targets), rcond=None)
    return {name: round(float(value), 3) for name, value in zip(FITTED, solution, strict=True)}


def predicted_bytes(record: dict[str, Any]) -> int:
    """The planner's prediction for a measured record (made now: the records keep only what was measured)."""
    return plan_memory(record["config"], device=record["device"]).peak_bytes


def format_pairs(results: dict[str, Any]) -> str:
    """The measured-vs-predicted table (Markdown), as bench/RESULTS.md shows it."""
    lines = ["| configuration | measured | predicted | deviation |", "|---|---|---|---|"]
    for record in results["cases"]:
        if not record.get("measured_bytes"):
            lines.append(f"| {record['name']} | failed: {record.get('error')} | | |")
            continue
        measured, predicted = record["measured_bytes"], predicted_bytes(record)
        lines.append(
            f"| {record['name']} | {measured / GIB:.2f} GiB | {predicted / GIB:.2f} GiB "
            f"| {100 * (predicted / measured - 1):+.1f} % |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = CommandLineParser(prog="python -m musicgen_lora.bench.memory", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where the training steps run")
    parser.add_argument("--quick", action="store_true", help="two tiny cases (a smoke test, meaningless numbers)")
    parser.add_argument("--only", nargs="+", default=None, help="run only the cases with these names, in this order")
    parser.add_argument("--out", default="bench/memory_measurements.json", help="JSON file of the records")
    parser.add_argument("--models_dir", default=None, help="keep the saved random models here and reuse them")
    with exit_on_user_error(argv):
        args = parser.parse_args(argv)
        check_device(args.device)
        cases = memory_cases(args.device, args.quick)
        if args.only:
            unknown = sorted(set(args.only) - {c.name for c in cases})
            if unknown:
                raise UserError(f"--only: no case named {unknown[0]!r}; cases: {', '.join(c.name for c in cases)}")
            by_name = {c.name: c for c in cases}
            cases = [by_name[name] for name in dict.fromkeys(args.only)]  # in the order given
    setup_logging()
    models_dir = Path(args.models_dir) if args.models_dir else None
    results = run_memory_cases(cases, args.device, Path(args.out) if args.out else None, models_dir=models_dir)
    print(format_pairs(results))
    return results


if __name__ == "__main__":
    main()
