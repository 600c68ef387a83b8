"""The benchmark's training cases: :class:`Case` (one configuration), the CPU and GPU plans, the config a case trains
with (parsed by the real ``parse_config``), and :func:`run_case`, which builds or loads a random model of the real
size, trains it with our Trainer next to a bare PyTorch loop, and measures speed, FLOPs and memory; in-process, or in
a fresh process (:func:`run_case_in_subprocess`) so that memory peaks never mix."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from peft import PeftModel
from transformers import Trainer

from ..compat import lora_layers
from ..config.arguments import ParsedConfig
from ..config.parsing import parse_config
from ..demo.tiny import build_tiny_musicgen
from ..errors import UserError
from ..models.loading import load_model_and_processor, ready_for_training
from ..train.collator import MusicgenCollator
from ..train.lora import add_trainable_parts, cast_frozen_base, frozen_base_dtype
from ..train.lora_speed import PackedBitsDropout
from ..train.run import build_trainer
from .measure import (
    BareStep,
    PeakProbe,
    StepTimer,
    autocast_context,
    count_step_flops,
    median_or_nan,
    memory_floor,
    peak_rss_bytes,
    synchronize,
)

FRAME_RATE = 50  # MusicGen's codes: 50 frames per second


CAPTION = "lofi hip hop, dusty drums, mellow piano, 84 bpm, A minor"


@dataclass
class Case:
    """One training configuration, measured in a fresh process (so memory peaks never mix)."""

    name: str
    architecture: str = "small"
    variant: str = "mono"
    batch_size: int = 1
    seconds: float = 10.0
    precision: str = "bf16"  # fp32 | bf16 | fp16 (autocast)
    base_dtype: str = "auto"  # base_model_dtype: auto casts the frozen base to the autocast dtype
    checkpointing: bool = False
    attn: str = "sdpa"
    optim: str = "adamw_torch_fused"
    compile: bool = False
    steps: int = 2  # timed steps, after `warmup` untimed ones
    # With a reference peak (FLOP/s, set by the suite on the CPU): keep training, up to max_steps timed steps, until
    # `steps` of them ran at full speed (probes around them >= FULL_SPEED of the reference). 0: exactly `steps`.
    reference_peak: float = 0.0
    max_steps: int = 12
    warmup: int = 1
    bare: bool = True  # also time the bare PyTorch loop on the same model
    count_flops: bool = True
    device: str = "cpu"
    extras: bool = False  # also time the text encoder and the collator alone
    lora_dropout: float = 0.05
    decoder_dropout: float | None = None  # None: the checkpoint's (0.1), as a default config trains
    fast_lora: bool = True  # packed-bits LoRA dropout and no fp32 copy of LoRA inputs under autocast (lora_speed)
    model_dir: str | None = None  # a saved random model, loaded as training loads it (else built in memory)
    quantize: str | None = None  # quantize_base (needs model_dir: quantization happens in from_pretrained)


def case_argv(case: Case, workdir: Path) -> list[str]:
    """The config of a case, as a user would write it (parsed by the real parse_config)."""
    argv = [
        "--model_name_or_path",
        case.model_dir or f"random-{case.architecture}",
        "--dataset_name",
        "synthetic",
        "--output_dir",
        str(workdir / "out"),
        "--report_to",
        "none",
        "--save_strategy",
        "no",
        "--disable_tqdm",
        "true",
        "--logging_steps",
        "1000000",
        "--seed",
        "0",
        "--per_device_train_batch_size",
        str(case.batch_size),
        "--max_steps",
        str(case.warmup + (case.max_steps if case.reference_peak else case.steps)),
        "--max_duration_in_seconds",
        str(case.seconds),
        "--gradient_checkpointing",
        str(case.checkpointing).lower(),
        "--base_model_dtype",
        case.base_dtype,
        "--attn_implementation",
        case.attn,
        "--optim",
        case.optim,
        "--torch_compile",
        str(case.compile).lower(),
        "--lr_scheduler_type",
        "constant",
        "--lora_dropout",
        str(case.lora_dropout),
    ]
    if case.decoder_dropout is not None:
        argv += ["--decoder_dropout", str(case.decoder_dropout)]
    if case.quantize is not None:
        argv += ["--quantize_base", case.quantize]
    if case.precision == "bf16":
        argv += ["--bf16", "true"]
    elif case.precision == "fp16":
        argv += ["--fp16", "true"]
    if case.device == "cpu":
        argv += ["--use_cpu", "true"]
    return argv


def cpu_cases(scale: str) -> list[Case]:
    """musicgen-small LoRA at batch 1 x 10 s (tiny model, batch 2 x 2 s with --quick)."""
    common = {} if scale == "full" else dict(architecture="tiny", seconds=2.0, batch_size=2, steps=2)
    if scale == "smoke":
        common["steps"] = 1
    # FLOPs are counted once (bf16 base: the fastest), the bare loop runs in the fp32 and bf16 cases; the other
    # cases have the same model and batch shapes and measure their step time and memory only
    timing_only = dict(count_flops=False, bare=False)
    cases = [
        Case("bf16 base", precision="bf16", extras=True, **{**common, "steps": common.get("steps", 4)}),
        Case("fp32", precision="fp32", extras=True, count_flops=False, **common),
        Case("bf16 autocast, fp32 base", precision="bf16", base_dtype="float32", **timing_only, **common),
        Case("bf16 base, eager attention", precision="bf16", attn="eager", **timing_only, **common),
        Case("bf16 base, checkpointing", precision="bf16", checkpointing=True, **timing_only, **common),
        Case("fp32, checkpointing", precision="fp32", checkpointing=True, **timing_only, **{**common, "steps": 1}),
        Case("bf16 base, PEFT's dropout and casts", precision="bf16", fast_lora=False, **timing_only, **common),
        Case("bf16 base, decoder_dropout 0", precision="bf16", decoder_dropout=0.0, **timing_only, **common),
        Case("bf16 base, lora_dropout 0", precision="bf16", lora_dropout=0.0, **timing_only, **common),
    ]
    if scale != "full":  # the optimizer alone is measured below; in the full plan its share is below the noise
        foreach = Case("bf16 base, foreach AdamW", precision="bf16", optim="adamw_torch", **timing_only, **common)
        cases.insert(4, foreach)
    if scale == "full":  # minutes of compilation on this CPU even for the tiny model: not in --quick
        cases.append(Case("bf16 base, torch.compile", precision="bf16", compile=True, **timing_only))
    return cases


def cuda_cases(scale: str) -> list[Case]:
    """small / medium / melody-sized LoRA steps at batch 2 x 30 s, bf16 with the base in bf16 (tiny with --quick)."""
    if scale != "full":
        common = dict(architecture="tiny", seconds=2.0, batch_size=2, steps=2, device="cuda")
        gc = dict(checkpointing=True, count_flops=False)
        return [Case("bf16 base", **common), Case("bf16 base, checkpointing", **gc, **common)]
    common = dict(batch_size=2, seconds=30.0, steps=5, warmup=2, device="cuda", extras=True)
    gc = dict(checkpointing=True, count_flops=False)  # FLOPs: counted once per shape, without checkpointing
    return [
        Case("small, bf16 base", architecture="small", **common),
        Case("small, bf16 base, checkpointing", architecture="small", **gc, **common),
        Case("small, bf16 autocast, fp32 base", architecture="small", base_dtype="float32", **common),
        Case(
            "small, bf16 base, eager attention",
            architecture="small",
            attn="eager",
            bare=False,
            count_flops=False,
            **common,
        ),
        Case("medium, bf16 base", architecture="medium", **common),
        Case("medium, bf16 base, checkpointing", architecture="medium", **gc, **common),
        Case("melody, bf16 base", architecture="medium", variant="melody", **common),
        Case("melody, bf16 base, checkpointing", architecture="medium", variant="melody", **gc, **common),
        Case(
            "melody, fp16 base, checkpointing",
            architecture="medium",
            variant="melody",
            precision="fp16",
            **gc,
            **common,
        ),
    ]


def synthetic_codes(
    rows: int, frames: list[int] | int, num_codebooks: int, codebook_size: int, seed: int = 0
) -> datasets.Dataset:
    """A dataset of random codes (K, frames) with captions, in the schema prepare writes."""
    rng = np.random.default_rng(seed)
    lengths = frames if isinstance(frames, list) else [frames] * rows
    codes = [rng.integers(0, codebook_size, (num_codebooks, n), dtype=np.int16) for n in lengths]
    return datasets.Dataset.from_dict({"codes": codes, "text": [CAPTION] * len(lengths)})


def run_case(case: Case, workdir: Path) -> dict[str, Any]:
    """Build the model, train ``warmup + steps`` steps with our Trainer (and the bare loop), measure.

    Returns the case (as a dict) and its measurements: weights, FLOPs per step, step times with the probed throughput
    around each, memory peaks beside the analytic floor, and with ``extras`` the text encoder's and collator's times.
    """
    torch.manual_seed(0)
    parsed = parse_config(case_argv(case, workdir))
    if case.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda needs a CUDA GPU, and torch.cuda.is_available() is false here; use --device cpu")
    model, processor = _model_for(case, parsed)
    frames = int(case.seconds * FRAME_RATE)
    rows = case.batch_size * (case.steps + case.warmup)
    dataset = _training_codes(case, model, rows, frames)
    # without fast_lora, PEFT casts LoRA inputs to fp32 (and autocast back to bf16) as usual
    trainer = build_trainer(parsed, model, processor, dataset, None, lora_inputs_in_autocast_dtype=case.fast_lora)
    collator = dataclasses.replace(trainer.data_collator, batches_collated=0)
    size = case.batch_size
    batches = [collator([dataset[i * size + j] for j in range(size)]) for i in range(rows // size)]

    result: dict[str, Any] = {"case": dataclasses.asdict(case), **_weights(model)}
    if case.count_flops:
        result["flops_per_step"] = _flops_per_step(case, model, collator, dataset)
    result.update(_timed_training(case, trainer, batches))
    act_bytes = 4 if case.precision == "fp32" else 2
    conditioning = batches[0]["input_ids"].shape[1] + batches[0].get("input_features", torch.zeros(1, 0)).shape[1]
    result["activation_floor_bytes"] = memory_floor(
        model.config, case.batch_size, frames, conditioning, act_bytes, case.checkpointing
    )
    # weights as stored + fp32 gradients and AdamW's two moments for the trainable weights + counted activations
    trainable = result["trainable_params"]
    result["memory_floor_bytes"] = result["weight_bytes"] + 12 * trainable + result["activation_floor_bytes"]
    if case.extras:  # what a cached text encoder or dataloader workers could save at most
        result.update(_side_work_times(case, model, collator, dataset, batches[0]))
    result["frames_per_step"] = case.batch_size * frames
    return result


def _model_for(case: Case, parsed: ParsedConfig) -> tuple[PeftModel, Any]:
    """The case's model with its frozen base cast and LoRA added, as training prepares it, and its processor."""
    base_dtype = frozen_base_dtype(parsed.model, parsed.training)
    if case.model_dir:  # as training.run_training loads it: frozen base straight in its dtype
        model, processor = load_model_and_processor(parsed.model, dtype=base_dtype)
    else:
        model, processor = build_tiny_musicgen(
            architecture=case.architecture, variant=case.variant, fit_codebooks=False
        )
        ready_for_training(model)
        model.set_attn_implementation({"decoder": case.attn, "text_encoder": case.attn})
    cast_frozen_base(model, base_dtype, parsed.lora)
    model = add_trainable_parts(model, parsed.lora)
    if not case.fast_lora:  # torch's dropout, as PEFT builds it
        for layer in lora_layers(model):
            for name, dropout in layer.lora_dropout.items():
                if isinstance(dropout, PackedBitsDropout):
                    layer.lora_dropout[name] = torch.nn.Dropout(dropout.p)
    return model, processor


def _training_codes(case: Case, model: PeftModel, rows: int, frames: int) -> datasets.Dataset:
    """Random codes for every step of the case; a melody case gets each clip's chroma too, as prepare stores it."""
    decoder = model.config.decoder
    dataset = synthetic_codes(rows, frames, decoder.num_codebooks, decoder.vocab_size)
    if case.variant == "melody":  # chroma of each clip (12 bins, 7.8125 frames/s)
        chroma = np.random.default_rng(1).random((rows, math.ceil(case.seconds * 7.8125) + 1, 12), dtype=np.float32)
        dataset = dataset.add_column("chroma", [clip.tolist() for clip in chroma])
    return dataset


def _weights(model: PeftModel) -> dict[str, Any]:
    """Bytes of the weights and buffers as stored, trainable parameters, and the weights' dtypes."""
    params = list(model.parameters())
    weight_bytes = sum(p.numel() * p.element_size() for p in params)
    weight_bytes += sum(b.numel() * b.element_size() for b in model.buffers())
    return {
        "weight_bytes": weight_bytes,
        "trainable_params": sum(p.numel() for p in params if p.requires_grad),
        "weight_dtypes": sorted({str(p.dtype).removeprefix("torch.") for p in params}),
    }


def _flops_per_step(case: Case, model: PeftModel, collator: MusicgenCollator, dataset: datasets.Dataset) -> int:
    """FLOPs of one of the case's steps, counted on one clip (FLOPs are linear in the batch)."""
    model.to(case.device)
    one = dataclasses.replace(collator, batches_collated=0)([dataset[0]])
    one = {k: v.to(case.device) for k, v in one.items()}
    with autocast_context(case.device, case.precision):
        flops = count_step_flops(model, one) * case.batch_size
    if case.device == "cuda":
        torch.cuda.empty_cache()
    return flops


def _timed_training(case: Case, trainer: Trainer, batches: list[dict]) -> dict[str, Any]:
    """Train with a :class:`StepTimer` (and a bare step after each Trainer step); step times, probes, memory peaks."""
    peak_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[case.precision]
    # the tiny model's numbers mean nothing (a smoke test), and a 1024^3 bf16 matmul takes about 2.5 s on a CPU
    # without bf16 instructions: its probes (six per step) cost more than the steps
    peak_size = 256 if case.architecture == "tiny" else (8192 if case.device == "cuda" else 2048)
    bare = BareStep(trainer.model, batches, case.device, case.precision) if case.bare and not case.compile else None
    probe = PeakProbe(case.device, peak_dtype, peak_size)
    timer = StepTimer(
        case.device, probe, bare, warmup=case.warmup, steps=case.steps, reference_peak=case.reference_peak
    )
    trainer.add_callback(timer)
    train_start = time.perf_counter()
    trainer.train()
    trainer_peaks, bare_peaks = timer.step_peaks()
    first = timer.trainer_steps[0] if timer.trainer_steps else math.nan
    result: dict[str, Any] = {"first_step_s": first}  # compilation included
    result["trainer_steps_s"] = timer.trainer_steps[case.warmup :]
    result["trainer_step_peaks"] = trainer_peaks[case.warmup :]
    result["trainer_step_s"] = median_or_nan(result["trainer_steps_s"])
    if bare is not None:
        result["bare_steps_s"] = timer.bare_steps[case.warmup :]
        result["bare_step_peaks"] = bare_peaks[case.warmup :]
        result["bare_step_s"] = median_or_nan(result["bare_steps_s"])
    result["peak_flops"] = max(timer.probes)
    result["train_wall_s"] = time.perf_counter() - train_start
    if case.device == "cuda":
        result["peak_allocated_bytes"] = torch.cuda.max_memory_allocated()
        result["peak_reserved_bytes"] = torch.cuda.max_memory_reserved()
    result["peak_rss_training_bytes"] = peak_rss_bytes()
    result["peak_rss_before_training_bytes"] = timer.peak_before
    result["peak_rss_process_bytes"] = max(timer.peak_before, result["peak_rss_training_bytes"])
    return result


def _side_work_times(
    case: Case, model: PeftModel, collator: MusicgenCollator, dataset: datasets.Dataset, batch: dict
) -> dict[str, float]:
    """Seconds of the text encoder alone on ``batch`` (best of 3) and of collating one batch (mean of 3)."""
    base = model.get_base_model()
    text = {k: v.to(case.device) for k, v in batch.items() if k in ("input_ids", "attention_mask")}
    times = []
    with torch.no_grad(), autocast_context(case.device, case.precision):
        for _ in range(3):
            synchronize(case.device)
            start = time.perf_counter()
            base.text_encoder(**text)
            synchronize(case.device)
            times.append(time.perf_counter() - start)
    rows_of_batch = [dataset[j] for j in range(case.batch_size)]
    start = time.perf_counter()
    for _ in range(3):
        collator(rows_of_batch)
    return {"text_encoder_s": min(times), "collate_s": (time.perf_counter() - start) / 3}


def save_random_model(architecture: str, workdir: Path) -> Path:
    """A random model of ``architecture`` saved as a model folder (fp32 safetensors, like the Hub checkpoints)."""
    folder = workdir / f"random-{architecture}"
    model, processor = build_tiny_musicgen(architecture=architecture, fit_codebooks=False)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def run_case_in_subprocess(case: Case, timeout: float) -> dict[str, Any]:
    """:func:`run_case` in a fresh Python process (its peak memory is its own); errors are recorded, not raised."""
    with tempfile.TemporaryDirectory(prefix="musicgen-bench-") as workdir:
        command = [
            sys.executable,
            "-m",
            "musicgen_lora.bench",
            "--worker",
            json.dumps(dataclasses.asdict(case)),
            "--workdir",
            workdir,
        ]
        env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
        root = str(Path(__file__).resolve().parents[2])  # the folder holding musicgen_lora/
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
        start = time.perf_counter()
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
        except subprocess.TimeoutExpired:
            return {"case": dataclasses.asdict(case), "error": f"timed out after {timeout:.0f} s"}
        elapsed = time.perf_counter() - start
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode != 0 or not lines:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            return {"case": dataclasses.asdict(case), "error": f"exit {done.returncode}: {' | '.join(tail)[-600:]}"}
        result = json.loads(lines[-1])
        result["process_wall_s"] = elapsed
        return result
