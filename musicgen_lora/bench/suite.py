"""Benchmark suite: training speed, compute efficiency, memory, data preparation and padding, on random models of the
real MusicGen sizes (built from config by :mod:`musicgen_lora.tiny`, nothing downloaded).

    python -m musicgen_lora.bench [--quick] [--device cpu|cuda] [--out bench/results.json]

Prints one table and writes every number to ``--out`` (JSON). Measurements:

1. **Trainer overhead**: frames/s of our training loop (``train.run.build_trainer``: MusicgenTrainer, our collator,
   callbacks) ÷ frames/s of a bare PyTorch loop (forward, our loss, backward, optimizer step) on the same model,
   same batch shapes, same precision, optimizer and checkpointing, one bare step after each Trainer step.
2. **MFU**: model FLOPs of one step (counted with ``torch.utils.flop_counter`` on a real forward + backward with eager
   attention and no checkpointing: what a LoRA step needs, recomputation not counted) ÷ step time ÷ this machine's
   matmul peak in the same precision, measured here; and ÷ the throughput probed around each step.

Every timed step has a matmul probe right before and after it (:class:`~.measure.PeakProbe`): on a shared host the
speed changes from second to second. On the CPU each case trains until ``steps`` of its steps ran at full speed
(probes >= ``FULL_SPEED`` of the best seen), at most ``max_steps``, and the table uses those steps.
3. **Memory**: peak RSS (CPU) or peak allocated (CUDA) of training steps, each configuration in a fresh process,
   beside an analytic floor (weights as stored + adapter state + counted activations, see
   :func:`~.measure.memory_floor`).
4. **Preparation**: audio seconds per wall second of ``python -m musicgen_lora.prepare`` (decode, resample, tempo/key
   captions, EnCodec encoding with the real 32 kHz codec) at 1x, 4x and 16x a synthetic corpus, and the cache-hit
   rerun's time as a fraction of the first run.
5. **Padding waste**: padded fraction of the decoder positions in the Trainer's real batches, random order vs
   ``train_sampling_strategy: group_by_length``.

Plus each lever's before/after (frozen base cast vs autocast, SDPA vs eager, fused vs foreach AdamW, gradient
checkpointing, torch.compile, the text encoder's share of a step, the collator's share). ``--quick`` runs the same
code on the tiny architecture (a smoke test: complete table, meaningless numbers).

This module is the plan and the command line; the cases and their runs are :mod:`.cases`, the instruments
:mod:`.measure`, the other measurements :mod:`.parts`, the table :mod:`.table`."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import peft
import torch
import transformers

from ..config.parsing import OptionsParser
from ..errors import UserError, exit_on_user_error
from ..files import ensure_writable_folder
from ..logs import setup_logging
from .cases import Case, cpu_cases, cuda_cases, run_case, run_case_in_subprocess, save_random_model
from .measure import matmul_peak
from .memorisation import run_benchmark as memorisation_bench
from .parts import optimizer_bench, padding_bench, preparation_bench
from .table import format_table, rows_of

logger = logging.getLogger(__name__)


SCALES = ("full", "quick", "smoke")  # smoke: --quick's plan in one process, for the test suite


def machine_info(device: str) -> dict[str, Any]:
    """Python, torch, transformers and peft versions, threads, the CPU (and GPU) model, the date and the load."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
    }
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError, AttributeError):
        info["load_average"] = os.getloadavg()
    if device == "cuda" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    return info


def check_device(device: str) -> None:
    """Raises UserError when ``device`` is cuda and this machine has no CUDA GPU."""
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda needs a CUDA GPU, and torch.cuda.is_available() is false here; use --device cpu")


def run_suite(scale: str, device: str, out: Path | None, case_timeout: float = 1200.0) -> dict[str, Any]:
    """Every measurement at ``scale`` (see SCALES); returns the results (also written to ``out`` as JSON)."""
    check_device(device)
    quick = scale != "full"
    results: dict[str, Any] = {"quick": quick, "scale": scale, "device": device, "machine": machine_info(device)}
    size = 1024 if quick else (8192 if device == "cuda" else 2048)
    precisions = {"fp32": torch.float32, "bf16": torch.bfloat16} | ({"fp16": torch.float16} if device == "cuda" else {})
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 peak without TF32, as the fp32 training steps run
    results["matmul_peak_flops"] = {
        name: matmul_peak(device, dtype, size, seconds=0.5 if quick else 3.0) for name, dtype in precisions.items()
    }
    cases = cuda_cases(scale) if device == "cuda" else cpu_cases(scale)
    if device == "cpu" and scale == "full":  # this shared host's speed swings: time steps until some ran at full speed
        for case in cases:
            case.reference_peak = results["matmul_peak_flops"][case.precision]
    with tempfile.TemporaryDirectory(prefix="musicgen-bench-") as workdir:
        _run_cases(cases, scale, device, Path(workdir), results, out, case_timeout)
        _run_parts(_parts(scale, device, Path(workdir)), scale, results)
    with contextlib.suppress(OSError, AttributeError):
        results["machine"]["load_average_end"] = os.getloadavg()
    rows = rows_of(results)
    results["rows"] = rows
    results["table"] = format_table(results, rows)
    if out is not None:
        _write(out, results)
    return results


def _run_cases(
    cases: list[Case],
    scale: str,
    device: str,
    workdir: Path,
    results: dict[str, Any],
    out: Path | None,
    case_timeout: float,
) -> None:
    """Run every case into ``results["cases"]``, each in a fresh process except at the smoke scale; ``out`` is
    rewritten after each, so a run cut short keeps what it measured."""
    if device == "cpu":  # CPU cases load a saved model as training does (GPU cases build theirs in memory)
        saved = {}
        for case in cases:
            if case.architecture not in saved:
                saved[case.architecture] = str(save_random_model(case.architecture, workdir))
            case.model_dir = saved[case.architecture]
    results["cases"] = []
    for case in cases:
        logger.info("bench: %s ...", case.name)
        if scale == "smoke":  # one process: fast, but the memory peaks of the cases mix
            results["cases"].append(run_case(case, workdir / f"case-{len(results['cases'])}"))
        else:
            # compilation can take longer than all the other cases together: bounded, reported if it runs out
            timeout = min(case_timeout, 420) if case.compile else case_timeout
            results["cases"].append(run_case_in_subprocess(case, timeout))
        if out is not None:
            _write(out, results)


def _parts(scale: str, device: str, workdir: Path) -> dict[str, Callable[[], dict[str, Any]]]:
    """The measurements besides the cases, at ``scale``, by name."""
    quick = scale != "full"
    clips, batch, window = (96, 4, 2.0) if quick else (512, 8, 30.0)
    base_clips, seconds = (1, 1.0) if quick else (6, 5.0)  # 1x: 30 s of audio
    parts = {
        "optimizer": lambda: optimizer_bench("tiny" if quick else "small", steps=5 if quick else 20),
        "padding": lambda: padding_bench(clips, batch, window, workdir),
        # the memorisation check's index: 10 h of training codes against 100 clips (the scale) when full
        "memorisation": lambda: memorisation_bench(
            hours=0.5 if quick else 10.0, clips=20 if quick else 100, repeat=1 if quick else 3, melody=not quick
        ),
    }
    if device == "cpu":  # preparation runs on the CPU (EnCodec on CUDA is a separate question, see RESULTS.md)
        parts["preparation"] = lambda: preparation_bench(
            base_clips, seconds, [1, 4, 16], workdir, real_codec=scale != "smoke"
        )
    return parts


def _run_parts(parts: dict[str, Callable[[], dict[str, Any]]], scale: str, results: dict[str, Any]) -> None:
    """Run each part into ``results[name]``; a failure is recorded in ``results["errors"]`` (raised when smoke)."""
    for name, measure in parts.items():
        logger.info("bench: %s ...", name)
        try:
            results[name] = measure()
        except Exception as err:  # noqa: BLE001 - one failed part must not lose the others' numbers
            if scale == "smoke":
                raise
            logger.exception("bench: %s failed", name)
            results.setdefault("errors", {})[name] = f"{type(err).__name__}: {err}"[:300]


def _write(out: Path, results: dict[str, Any]) -> None:
    """Save the results as JSON (numbers that JSON lacks as text)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, default=str) + "\n", encoding="utf-8")


def _check_out(out: Path) -> None:
    """Raises UserError when the results file ``out`` cannot be written (a folder, or a folder that is not
    writable)."""
    if out.is_dir():
        raise UserError(f"--out '{out}' is a folder; give a file name, e.g. {out / 'results.json'}")
    ensure_writable_folder(out.parent, "--out's folder")


@dataclass
class BenchOptions:
    """The options of ``python -m musicgen_lora.bench``."""

    quick: bool = field(default=False, metadata={"help": "tiny model, few steps: a smoke test of every measurement"})
    device: str = field(default="cpu", metadata={"choices": ["cpu", "cuda"], "help": "where the training steps run"})
    out: str = field(default="bench/results.json", metadata={"help": "JSON file for every number"})
    debug: bool = field(default=False, metadata={"help": "full tracebacks instead of one-line errors"})
    # the suite's own subprocesses: one case (JSON of a Case) in a fresh process, and its scratch folder
    worker: str | None = field(default=None, metadata={"help": argparse.SUPPRESS})
    workdir: str | None = field(default=None, metadata={"help": argparse.SUPPRESS})


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """``python -m musicgen_lora.bench``: runs the suite and prints its table; returns the results. With ``--worker``
    (the suite's own subprocesses) runs one case and prints its result as one JSON line."""
    parser = OptionsParser(BenchOptions, "python -m musicgen_lora.bench", description=__doc__.split("\n\n")[0])
    with exit_on_user_error(argv):
        (args,) = parser.parse(argv)
    if args.worker:
        logging.basicConfig(level=logging.WARNING)
        result = run_case(Case(**json.loads(args.worker)), Path(args.workdir))
        print(json.dumps(result))
        return result
    setup_logging()
    with exit_on_user_error(argv):
        check_device(args.device)
        if args.out:  # checked now: it is first written after the first measurement, minutes in
            _check_out(Path(args.out))
        results = run_suite("quick" if args.quick else "full", args.device, Path(args.out) if args.out else None)
        print(results["table"])
