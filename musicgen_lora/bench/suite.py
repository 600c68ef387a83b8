"""Benchmark suite: training speed, compute efficiency, memory, data preparation and padding, on random models of the
real MusicGen sizes (built from config by :mod:`musicgen_lora.tiny`, nothing downloaded).

    python -m musicgen_lora.bench [--quick] [--device cpu|cuda] [--out bench/results.json]

Prints one table and writes every number to ``--out`` (JSON). Measurements:

1. **Trainer overhead**: frames/s of our training loop (``training.build_trainer``: MusicgenTrainer, our collator,
   callbacks) ÷ frames/s of a bare PyTorch loop (forward, our loss, backward, optimizer step) on the same model,
   same batch shapes, same precision, optimizer and checkpointing, one bare step after each Trainer step.
2. **MFU**: model FLOPs of one step (counted with ``torch.utils.flop_counter`` on a real forward + backward with eager
   attention and no checkpointing: what a LoRA step needs, recomputation not counted) ÷ step time ÷ this machine's
   matmul peak in the same precision, measured here; and ÷ the throughput probed around each step.

Every timed step has a matmul probe right before and after it (:class:`PeakProbe`): on a shared host the speed
changes from second to second. On the CPU each case trains until ``steps`` of its steps ran at full speed (probes
>= ``FULL_SPEED`` of the best seen), at most ``max_steps``, and the table uses those steps.
3. **Memory**: peak RSS (CPU) or peak allocated (CUDA) of training steps, each configuration in a fresh process,
   beside an analytic floor (weights as stored + adapter state + counted activations, see :func:`memory_floor`).
4. **Preparation**: audio seconds per wall second of ``python -m musicgen_lora.prepare`` (decode, resample, tempo/key
   captions, EnCodec encoding with the real 32 kHz codec) at 1x, 4x and 16x a synthetic corpus, and the cache-hit
   rerun's time as a fraction of the first run.
5. **Padding waste**: padded fraction of the decoder positions in the Trainer's real batches, random order vs
   ``train_sampling_strategy: group_by_length``.

Plus each lever's before/after (frozen base cast vs autocast, SDPA vs eager, fused vs foreach AdamW, gradient
checkpointing, torch.compile, the text encoder's share of a step, the collator's share). ``--quick`` runs the same
code on the tiny architecture (a smoke test: complete table, meaningless numbers)."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import logging
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import TrainerCallback

from ..config.arguments import LoraArguments
from ..config.parsing import parse_config
from ..demo.synth import synthesize_corpus
from ..demo.tiny import build_tiny_musicgen
from ..demo.tiny_configs import ARCHITECTURES
from ..errors import UserError, exit_on_user_error
from ..logs import setup_logging
from ..models.loading import load_model_and_processor, ready_for_training
from ..prepare import pipeline as prepare
from ..train.lora import add_trainable_parts, cast_frozen_base, frozen_base_dtype
from ..train.lora_speed import PackedBitsDropout, lora_layers
from ..train.run import build_trainer
from ..train.trainer import codebook_cross_entropy

logger = logging.getLogger(__name__)


GIB = 2**30


FRAME_RATE = 50  # MusicGen's codes: 50 frames per second


CAPTION = "lofi hip hop, dusty drums, mellow piano, 84 bpm, A minor"


# Targets of issue #7 (each row of the table says whether it is reached).
TARGET_OVERHEAD = 0.95


TARGET_MFU_CPU_BF16 = 0.70


TARGET_MFU_GPU = 0.45


TARGET_CPU_GIB = 3.0


TARGET_GPU_MELODY_GB = 6.0


TARGET_SCALING = 0.10


TARGET_RERUN = 0.02


TARGET_PADDING = 0.05


FULL_SPEED = 0.8  # a step ran at full speed when the matmul probes around it reach this share of the best seen


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


def synchronize(device: str) -> None:
    if device == "cuda" and torch.cuda.is_available():
        torch.cuda.synchronize()


def peak_rss_bytes() -> int:
    """This process' peak resident set size since start or the last :func:`reset_peak_rss` (Linux VmHWM)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: kB; never reset


def reset_peak_rss() -> bool:
    """Reset the peak RSS to the current RSS (Linux >= 4.0: write 5 to /proc/self/clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def matmul_peak(device: str, dtype: torch.dtype, size: int, seconds: float = 2.0) -> float:
    """The machine's matmul throughput (FLOP/s) in ``dtype``: the best of repeated square matmuls."""
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    for _ in range(2):  # warm up (oneDNN / cuBLAS kernel selection)
        a @ b
    synchronize(device)
    best, start = math.inf, time.perf_counter()
    while time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        a @ b
        synchronize(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * size**3 / best


def memory_floor(config: Any, batch: int, frames: int, text_tokens: int, act_bytes: int, checkpointing: bool) -> int:
    """Activations a LoRA step must keep, counted (bytes): the floor's activation part.

    Per decoder layer and position, the tensors the backward pass needs at the least: self-attention: its layer-norm
    input, q, k, v and the attention output (5 d); cross-attention: layer-norm input, q, output (3 d); feed-forward:
    layer-norm input, fc1 input, GELU input and fc2 input (2 d + 2 ffn). With checkpointing only each layer's input
    (d) is kept, plus one layer's tensors while it is recomputed. The logits (K x V per position, in the autocast
    dtype, and their fp32 log-probabilities for the loss) come on top. Text-encoder activations need no backward.
    """
    decoder = config.decoder
    d, ffn, layers = decoder.hidden_size, decoder.ffn_dim, decoder.num_hidden_layers
    positions = batch * (frames + decoder.num_codebooks // decoder.audio_channels - 1)  # delayed steps
    if getattr(config, "model_type", "") == "musicgen_melody":  # conditioning prepended to the decoder's input
        positions += batch * text_tokens
    per_layer = (5 * d + 3 * d + 2 * d + 2 * ffn) * positions * act_bytes
    kept = (layers * d * positions * act_bytes + per_layer) if checkpointing else layers * per_layer
    logits = positions * decoder.num_codebooks * decoder.vocab_size * (act_bytes + 4)
    return kept + logits


def count_step_flops(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> int:
    """FLOPs of one LoRA training step (forward + the backward it needs) on ``batch``, counted by torch.

    Attention runs eagerly while counting (torch's counter does not see the CPU SDPA kernel), without checkpointing,
    so the count is the model's work, not recomputation. Gradients are cleared afterwards.
    """
    from torch.utils.flop_counter import FlopCounterMode

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    kernel = base.config.decoder._attn_implementation
    base.set_attn_implementation({"decoder": "eager", "text_encoder": "eager"})
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    try:
        with FlopCounterMode(display=False) as counter:
            sums, counts = codebook_cross_entropy(model(**inputs).logits, batch["labels"])
            (sums.sum() / counts.sum()).backward()
    finally:
        base.set_attn_implementation({"decoder": kernel, "text_encoder": kernel})
        model.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


def autocast_context(device: str, precision: str) -> Any:
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def synthetic_codes(rows: int, frames: list[int] | int, num_codebooks: int, codebook_size: int, seed: int = 0):
    """A dataset of random codes (K, frames) with captions, in the schema prepare writes."""
    import datasets

    rng = np.random.default_rng(seed)
    lengths = frames if isinstance(frames, list) else [frames] * rows
    codes = [rng.integers(0, codebook_size, (num_codebooks, n), dtype=np.int16) for n in lengths]
    return datasets.Dataset.from_dict({"codes": codes, "text": [CAPTION] * len(lengths)})


def _median(times: list[float]) -> float:
    return statistics.median(times) if times else math.nan


def case_argv(case: Case, workdir: Path) -> list[str]:
    """The config of a case, as a user would write it (parsed by the real parse_config)."""
    argv = [
        "--model_name_or_path", case.model_dir or f"random-{case.architecture}", "--dataset_name", "synthetic",
        "--output_dir", str(workdir / "out"), "--report_to", "none", "--save_strategy", "no",
        "--disable_tqdm", "true", "--logging_steps", "1000000", "--seed", "0",
        "--per_device_train_batch_size", str(case.batch_size), "--max_steps", str(case.warmup + (case.max_steps if case.reference_peak else case.steps)),
        "--max_duration_in_seconds", str(case.seconds), "--gradient_checkpointing", str(case.checkpointing).lower(),
        "--base_model_dtype", case.base_dtype, "--attn_implementation", case.attn, "--optim", case.optim,
        "--torch_compile", str(case.compile).lower(), "--lr_scheduler_type", "constant",
        "--lora_dropout", str(case.lora_dropout),
    ]  # fmt: skip
    if case.decoder_dropout is not None:
        argv += ["--decoder_dropout", str(case.decoder_dropout)]
    if case.precision == "bf16":
        argv += ["--bf16", "true"]
    elif case.precision == "fp16":
        argv += ["--fp16", "true"]
    if case.device == "cpu":
        argv += ["--use_cpu", "true"]
    return argv


class PeakProbe:
    """Short matmul bursts: the machine's matmul throughput right now (FLOP/s).

    This machine's speed changes from second to second (a shared host whose two vCPUs run at full speed only part of
    the time: 2048^3 bf16 matmuls swing between about 0.8 and 2.2 TFLOP/s), so every timed step is normalised by
    probes taken right before and after it.
    """

    def __init__(self, device: str, dtype: torch.dtype, size: int) -> None:
        self.device = device
        self.a = torch.randn(size, size, device=device).to(dtype)
        self.b = torch.randn(size, size, device=device).to(dtype)
        self.flops = 2 * size**3
        self.a @ self.b  # kernel selection

    def __call__(self, repeats: int = 3) -> float:
        best = math.inf
        for _ in range(repeats):
            synchronize(self.device)
            start = time.perf_counter()
            self.a @ self.b
            synchronize(self.device)
            best = min(best, time.perf_counter() - start)
        return self.flops / best


class BareStep:
    """One step of a plain PyTorch loop on the Trainer's model: forward, our loss, backward, optimizer step, under the
    same autocast and with the Trainer's own optimizer (so no second optimizer state inflates the memory peak)."""

    def __init__(self, model: torch.nn.Module, batches: list[dict], case: Case) -> None:
        self.model, self.batches, self.case = model, batches, case
        self.scaler = torch.amp.GradScaler(case.device) if case.precision == "fp16" else None
        self.count = 0

    def __call__(self, optimizer: torch.optim.Optimizer) -> float:

        optimizer = getattr(optimizer, "optimizer", optimizer)  # accelerate's wrapper -> the torch optimizer
        batch = self.batches[self.count % len(self.batches)]
        self.count += 1
        was_training = self.model.training
        self.model.train()
        synchronize(self.case.device)
        start = time.perf_counter()
        batch = {k: v.to(self.case.device) for k, v in batch.items()}
        labels = batch.pop("labels")
        with autocast_context(self.case.device, self.case.precision):
            sums, counts = codebook_cross_entropy(self.model(**batch).logits, labels)
            loss = sums.sum() / counts.sum()
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            loss.backward()
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        synchronize(self.case.device)
        seconds = time.perf_counter() - start
        self.model.train(was_training)
        return seconds


class StepTimer(TrainerCallback):
    """Trainer callback: times every optimizer step of our Trainer and, between two of them, probes the machine's
    speed and runs one bare step (excluded from the Trainer's times); resets the memory peaks when training starts.

    Timeline: probe, Trainer step 0, probe, bare step 0, probe, Trainer step 1, probe, bare step 1, probe, ... so each
    step has a probe right before and right after it, and each Trainer step a bare step next to it.
    """

    def __init__(self, device: str, probe: PeakProbe, bare: BareStep | None, case: Case | None = None) -> None:
        self.device, self.probe, self.bare, self.case = device, probe, bare, case
        self.trainer_steps: list[float] = []
        self.bare_steps: list[float] = []
        self.probes: list[float] = []
        self.start = math.nan
        self.resume = math.nan
        self.peak_before = 0

    def on_train_begin(self, *args: Any, **kwargs: Any) -> None:
        synchronize(self.device)
        if self.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        self.peak_before = peak_rss_bytes()  # building / loading / casting the model
        reset_peak_rss()
        self.probes.append(self.probe())
        self.start = self.resume = time.perf_counter()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        synchronize(self.device)
        self.trainer_steps.append(time.perf_counter() - self.resume)
        self.probes.append(self.probe())
        if self.bare is not None:
            self.bare_steps.append(self.bare(kwargs["optimizer"]))
            self.probes.append(self.probe())
        if self.case is not None and self.case.reference_peak and self._enough_at_full_speed():
            control.should_training_stop = True
        synchronize(self.device)
        self.resume = time.perf_counter()

    def _enough_at_full_speed(self) -> bool:
        """The rule the table applies (:func:`_full_speed_steps`), on the timed steps so far."""
        warmup = self.case.warmup
        trainer_peaks, bare_peaks = self.step_peaks()
        so_far = {
            "trainer_steps_s": self.trainer_steps[warmup:], "trainer_step_peaks": trainer_peaks[warmup:],
            "bare_steps_s": self.bare_steps[warmup:], "bare_step_peaks": bare_peaks[warmup:],
        }  # fmt: skip
        fast, _ = _full_speed_steps(so_far, max(self.case.reference_peak, *self.probes))
        return len(fast) >= self.case.steps

    def step_peaks(self) -> tuple[list[float], list[float]]:
        """The machine's speed during each Trainer step and each bare step: the mean of the probes around it."""
        around = [(a + b) / 2 for a, b in zip(self.probes, self.probes[1:])]
        if self.bare is None:
            return around, []
        return around[0::2], around[1::2]


def run_case(case: Case, workdir: Path) -> dict[str, Any]:
    """Build the model, train ``warmup + steps`` steps with our Trainer (and the bare loop), measure."""

    torch.manual_seed(0)
    parsed = parse_config(case_argv(case, workdir))
    if case.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda needs a CUDA GPU, and torch.cuda.is_available() is false here; use --device cpu")
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
    decoder = model.config.decoder
    frames = int(case.seconds * FRAME_RATE)
    rows = case.batch_size * (case.steps + case.warmup)
    dataset = synthetic_codes(rows, frames, decoder.num_codebooks, decoder.vocab_size)
    if case.variant == "melody":  # chroma of each clip (12 bins, 7.8125 frames/s), as prepare stores it
        chroma = np.random.default_rng(1).random((rows, math.ceil(case.seconds * 7.8125) + 1, 12), dtype=np.float32)
        dataset = dataset.add_column("chroma", [clip.tolist() for clip in chroma])
    # without fast_lora, PEFT casts LoRA inputs to fp32 (and autocast back to bf16) as usual
    trainer = build_trainer(parsed, model, processor, dataset, None, lora_inputs_in_autocast_dtype=case.fast_lora)
    collator = dataclasses.replace(trainer.data_collator, batches_collated=0)
    size = case.batch_size
    batches = [collator([dataset[i * size + j] for j in range(size)]) for i in range(rows // size)]

    result: dict[str, Any] = {"case": dataclasses.asdict(case)}
    params = list(model.parameters())
    result["weight_bytes"] = sum(p.numel() * p.element_size() for p in params) + sum(
        b.numel() * b.element_size() for b in model.buffers()
    )
    trainable = sum(p.numel() for p in params if p.requires_grad)
    result["trainable_params"] = trainable
    result["weight_dtypes"] = sorted({str(p.dtype).removeprefix("torch.") for p in params})
    if case.count_flops:
        model.to(case.device)
        one = dataclasses.replace(collator, batches_collated=0)([dataset[0]])  # FLOPs are linear in the batch
        one = {k: v.to(case.device) for k, v in one.items()}
        with autocast_context(case.device, case.precision):
            result["flops_per_step"] = count_step_flops(model, one) * case.batch_size
        if case.device == "cuda":
            torch.cuda.empty_cache()

    peak_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[case.precision]
    peak_size = 1024 if case.architecture == "tiny" else (8192 if case.device == "cuda" else 2048)
    bare = BareStep(trainer.model, batches, case) if case.bare and not case.compile else None
    timer = StepTimer(case.device, PeakProbe(case.device, peak_dtype, peak_size), bare, case)
    trainer.add_callback(timer)
    train_start = time.perf_counter()
    trainer.train()
    trainer_peaks, bare_peaks = timer.step_peaks()
    result["first_step_s"] = timer.trainer_steps[0] if timer.trainer_steps else math.nan  # incl. compilation
    result["trainer_steps_s"] = timer.trainer_steps[case.warmup :]
    result["trainer_step_peaks"] = trainer_peaks[case.warmup :]
    result["trainer_step_s"] = _median(result["trainer_steps_s"])
    if bare is not None:
        result["bare_steps_s"] = timer.bare_steps[case.warmup :]
        result["bare_step_peaks"] = bare_peaks[case.warmup :]
        result["bare_step_s"] = _median(result["bare_steps_s"])
    result["peak_flops"] = max(timer.probes)
    result["train_wall_s"] = time.perf_counter() - train_start
    if case.device == "cuda":
        result["peak_allocated_bytes"] = torch.cuda.max_memory_allocated()
        result["peak_reserved_bytes"] = torch.cuda.max_memory_reserved()
    result["peak_rss_training_bytes"] = peak_rss_bytes()
    result["peak_rss_before_training_bytes"] = timer.peak_before
    result["peak_rss_process_bytes"] = max(timer.peak_before, result["peak_rss_training_bytes"])
    act_bytes = 4 if case.precision == "fp32" else 2
    conditioning = batches[0]["input_ids"].shape[1] + batches[0].get("input_features", torch.zeros(1, 0)).shape[1]
    result["activation_floor_bytes"] = memory_floor(
        model.config, case.batch_size, frames, conditioning, act_bytes, case.checkpointing
    )
    # weights as stored + fp32 gradients and AdamW's two moments for the trainable weights + counted activations
    result["memory_floor_bytes"] = result["weight_bytes"] + 12 * trainable + result["activation_floor_bytes"]

    if case.extras:  # what a cached text encoder or dataloader workers could save at most
        base = model.get_base_model()
        text = {k: v.to(case.device) for k, v in batches[0].items() if k in ("input_ids", "attention_mask")}
        times = []
        with torch.no_grad(), autocast_context(case.device, case.precision):
            for _ in range(3):
                synchronize(case.device)
                start = time.perf_counter()
                base.text_encoder(**text)
                synchronize(case.device)
                times.append(time.perf_counter() - start)
        result["text_encoder_s"] = min(times)
        rows_of_batch = [dataset[j] for j in range(case.batch_size)]
        start = time.perf_counter()
        for _ in range(3):
            collator(rows_of_batch)
        result["collate_s"] = (time.perf_counter() - start) / 3
    result["frames_per_step"] = case.batch_size * frames
    return result


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
        command = [sys.executable, "-m", "musicgen_lora.bench", "--worker", json.dumps(dataclasses.asdict(case)),
                   "--workdir", workdir]  # fmt: skip
        env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
        root = str(Path(__file__).resolve().parents[1])
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


def optimizer_bench(architecture: str, steps: int) -> dict[str, float]:
    """Seconds per AdamW step on the LoRA parameters of ``architecture`` (default targets, r=16): foreach vs fused."""

    with torch.device("meta"):  # only the adapter's shapes are needed: no memory, no init
        model, _ = build_tiny_musicgen(architecture=architecture, fit_codebooks=False)
    ready_for_training(model)
    peft_model = add_trainable_parts(model, LoraArguments())
    shapes = [p.shape for p in peft_model.parameters() if p.requires_grad]
    result: dict[str, float] = {"params": float(sum(math.prod(s) for s in shapes))}
    for name, kwargs in (("adamw_torch", {"foreach": True}), ("adamw_torch_fused", {"fused": True})):
        params = [torch.nn.Parameter(torch.randn(s) * 0.01) for s in shapes]
        for p in params:
            p.grad = torch.randn_like(p) * 1e-3
        optimizer = torch.optim.AdamW(params, lr=1e-4, **kwargs)
        optimizer.step()  # creates the state
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            optimizer.step()
            times.append(time.perf_counter() - start)
        result[name] = statistics.median(times)
    return result


def padding_bench(clips: int, batch_size: int, seconds: float, workdir: Path) -> dict[str, float]:
    """Padded fraction of decoder positions in the Trainer's batches, random order vs group_by_length.

    Clip lengths are log-uniform between 1/15 and twice the window (2-60 s for 30 s windows: a folder of songs and
    excerpts); clips longer
    than the window become full windows, shorter ones are padded to the longest clip of their batch.
    """

    rng = np.random.default_rng(0)
    low, high = math.log(seconds / 15), math.log(2 * seconds)
    frames = [max(1, int(FRAME_RATE * s)) for s in np.exp(rng.uniform(low, high, clips))]
    dataset = None
    result = {}
    for strategy in ("random", "group_by_length"):
        model, processor = build_tiny_musicgen(fit_codebooks=False)  # the model does not matter: batches only
        ready_for_training(model)
        if dataset is None:
            decoder = model.config.decoder
            dataset = synthetic_codes(clips, frames, decoder.num_codebooks, decoder.vocab_size)
        case = Case("padding", architecture="tiny", batch_size=batch_size, seconds=seconds, precision="fp32")
        parsed = parse_config(case_argv(case, workdir) + ["--train_sampling_strategy", strategy])
        trainer = build_trainer(parsed, add_trainable_parts(model, parsed.lora), processor, dataset, None)
        padded = total = 0
        for batch in trainer.get_train_dataloader():
            mask = batch["decoder_attention_mask"]  # (bsz, steps): 0 where padded
            padded += int((mask == 0).sum())
            total += mask.numel()
        result[strategy] = padded / total
    return result


def preparation_bench(
    base_clips: int, seconds: float, multiples: list[int], workdir: Path, real_codec: bool = True
) -> dict[str, Any]:
    """``python -m musicgen_lora.prepare`` (in-process, through its main) on synthetic corpora of growing size.

    The model folder holds the real 32 kHz EnCodec (random weights: encoding costs the same) with a tiny decoder and
    text encoder, which preparation does not run. Captions get tempo and key (``add_metadata``).
    """

    model_dir = workdir / "prep-model"
    sizes = {**ARCHITECTURES["tiny"], "codec": ARCHITECTURES["small" if real_codec else "tiny"]["codec"]}
    model, processor = build_tiny_musicgen(architecture=sizes, fit_codebooks=False)
    model.save_pretrained(model_dir)
    processor.save_pretrained(model_dir)
    del model
    runs = []
    for multiple in multiples:
        corpus = workdir / f"corpus-{multiple}x"
        synthesize_corpus(corpus, clips=base_clips * multiple, seconds=seconds, seed=multiple)
        argv = [
            "--model_name_or_path", str(model_dir), "--dataset_name", str(corpus), "--output_dir",
            str(workdir / f"prep-{multiple}x"), "--data_cache_dir", str(workdir / f"cache-{multiple}x"),
            "--add_metadata", "true", "--report_to", "none", "--max_duration_in_seconds", "30",
        ]  # fmt: skip
        timings = []
        for _ in range(2):  # first run, then the cache-hit rerun
            start = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                prepare.main(argv)
            timings.append(time.perf_counter() - start)
        audio = base_clips * multiple * seconds
        runs.append({"multiple": multiple, "audio_s": audio, "first_s": timings[0], "rerun_s": timings[1],
                     "audio_s_per_s": audio / timings[0], "rerun_fraction": timings[1] / timings[0]})  # fmt: skip
    return {"clips_1x": base_clips, "clip_seconds": seconds, "real_codec": real_codec, "runs": runs}


SCALES = ("full", "quick", "smoke")  # smoke: --quick's plan in one process, for the test suite


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
        Case("small, bf16 base, eager attention", architecture="small", attn="eager", bare=False, count_flops=False,
             **common),  # fmt: skip
        Case("medium, bf16 base", architecture="medium", **common),
        Case("medium, bf16 base, checkpointing", architecture="medium", **gc, **common),
        Case("melody, bf16 base", architecture="medium", variant="melody", **common),
        Case("melody, bf16 base, checkpointing", architecture="medium", variant="melody", **gc, **common),
        Case("melody, fp16 base, checkpointing", architecture="medium", variant="melody", precision="fp16", **gc,
             **common),  # fmt: skip
    ]


def machine_info(device: str) -> dict[str, Any]:
    import peft
    import transformers

    info: dict[str, Any] = {
        "python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
        "peft": peft.__version__, "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
    }  # fmt: skip
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


def _by_name(cases: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {c["case"]["name"]: c for c in cases}


_FORMATS = {  # unit -> how a value in base units (fraction, bytes, seconds) is printed
    "%": lambda v: f"{100 * v:.1f} %",
    "GiB": lambda v: f"{v / GIB:.2f} GiB",
    "GB": lambda v: f"{v / 1e9:.2f} GB",
    "s": lambda v: f"{v:.3g} s",
    "ms": lambda v: f"{1000 * v:.3g} ms",
    "x": lambda v: f"{v:.3f}",
}


def _fmt(value: float, unit: str) -> str:
    if value is None or not math.isfinite(value):
        return "nan"
    return _FORMATS[unit](value) if unit in _FORMATS else f"{value:.4g} {unit}".strip()


def _sibling_flops(cases: list[dict[str, Any]], spec: dict[str, Any]) -> int | None:
    """The FLOPs counted for another case of the same model and batch shape (checkpointing does not change them)."""
    keys = ("architecture", "variant", "batch_size", "seconds")
    for other in cases:
        if "flops_per_step" in other and all(other["case"][k] == spec[k] for k in keys):
            return other["flops_per_step"]
    return None


def _full_speed_steps(case: dict[str, Any], best_peak: float) -> tuple[list[float], list[float]]:
    """The Trainer's and the bare loop's step times taken at full speed (probes around the step >= FULL_SPEED of the
    run's best). With a bare loop, only pairs (a Trainer step and the bare step after it) that both ran at full speed."""
    trainer = list(zip(case.get("trainer_steps_s") or [], case.get("trainer_step_peaks") or []))
    bare = list(zip(case.get("bare_steps_s") or [], case.get("bare_step_peaks") or []))
    if bare:
        pairs = [(t, b) for (t, tp), (b, bp) in zip(trainer, bare) if min(tp, bp) >= FULL_SPEED * best_peak]
        return [t for t, _ in pairs], [b for _, b in pairs]
    return [t for t, p in trainer if p >= FULL_SPEED * best_peak], []


def best_peaks(results: dict[str, Any]) -> dict[str, float]:
    """Per precision, the best matmul throughput measured anywhere in the run (the suite's start and every case's
    own measurements): what this machine showed it can do, the denominator of every MFU in the table."""
    peaks = dict(results["matmul_peak_flops"])
    for case in results["cases"]:
        precision = case.get("case", {}).get("precision")
        if case.get("peak_flops") and precision in peaks:
            peaks[precision] = max(peaks[precision], case["peak_flops"])
    return peaks


def rows_of(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Table rows: section, configuration, metric, value (number), unit, target (text), reached (bool or None)."""
    device = results["device"]
    peaks = best_peaks(results)
    rows: list[dict[str, Any]] = []

    def add(section: str, config: str, metric: str, value: Any, unit: str, target: str = "", reached: Any = None):
        value = float(value) if isinstance(value, (int, float)) else math.nan
        rows.append(dict(section=section, config=config, metric=metric, value=value, unit=unit, target=target,
                         reached=reached))  # fmt: skip

    for precision, peak in peaks.items():
        add("peak", f"matmul {precision}", "best measured in the run", peak / 1e12, "TFLOP/s")
    cases = results["cases"]
    for case in cases:
        name, spec = case["case"]["name"], case["case"]
        if "error" in case:
            add("error", name, case["error"][:80], math.nan, "")
            continue
        step, peak = case["trainer_step_s"], peaks[spec["precision"]]
        add("speed", name, "step (Trainer, median of all)", step, "s")
        if spec.get("reference_peak"):  # the full CPU plan: only steps taken at full speed are compared
            fast_trainer, fast_bare = _full_speed_steps(case, peak)
            timed = len(case.get("trainer_steps_s") or [])
            add("speed", name, f"timed steps that ran at full speed, of {timed}", len(fast_trainer), "")
        else:
            fast_trainer, fast_bare = case.get("trainer_steps_s") or [], case.get("bare_steps_s") or []
        full = _median(fast_trainer) if fast_trainer else step  # else: no step at full speed, all steps
        if fast_trainer:
            case["trainer_full_speed_step_s"] = full  # what the levers below compare
            if spec.get("reference_peak"):
                add("speed", name, "step at full speed (median)", full, "s")
        add("speed", name, "frames/s (Trainer, " + ("at full speed)" if fast_trainer else "all steps)"),
            case["frames_per_step"] / full, "")  # fmt: skip
        if "bare_step_s" in case:
            ratio = _median(fast_bare) / full if fast_bare else case["bare_step_s"] / step
            reached = ratio >= TARGET_OVERHEAD
            add("overhead", name, "Trainer ÷ bare frames/s" + (", full speed" if fast_bare else ", all steps"), ratio,
                "x", f">= {TARGET_OVERHEAD}", reached)  # fmt: skip
        flops = case.get("flops_per_step") or _sibling_flops(cases, spec)
        if flops:
            case["flops_per_step"] = flops
            mfu = flops / full / peak
            target, reached = "", None
            if spec["precision"] != "fp32":
                goal = TARGET_MFU_GPU if device == "cuda" else TARGET_MFU_CPU_BF16
                target, reached = f">= {goal:.0%}", mfu >= goal
            add("MFU", name, f"{flops / 1e9:.4g} GFLOP / {'step at full speed' if fast_trainer else 'median step'} / "
                f"{peak / 1e12:.3g} TFLOP/s", mfu, "%", target, reached)  # fmt: skip
            speeds = case.get("trainer_step_peaks")
            if speeds:  # against the matmul throughput probed around each step: the machine's speed at the time
                at_speed = _median([flops / (t * p) for t, p in zip(case["trainer_steps_s"], speeds)])
                add("MFU", name, "median over steps of FLOPs / (step time x probed throughput)", at_speed, "%")
        if device == "cuda":
            peak_mem = case["peak_allocated_bytes"]
            target, reached = "", None
            if spec["variant"] == "melody" and spec["checkpointing"]:
                target, reached = f"< {TARGET_GPU_MELODY_GB:g} GB", peak_mem < TARGET_GPU_MELODY_GB * 1e9
            add("memory", name, "peak allocated", peak_mem, "GB", target, reached)
        else:
            peak_mem = case["peak_rss_training_bytes"]
            target, reached = "", None
            if spec["checkpointing"] and spec["precision"] != "fp32":
                target, reached = f"< {TARGET_CPU_GIB:g} GiB", case["peak_rss_process_bytes"] < TARGET_CPU_GIB * GIB
            add("memory", name, "peak RSS, training steps", peak_mem, "GiB")
            add("memory", name, "peak RSS, whole process", case["peak_rss_process_bytes"], "GiB", target, reached)
        add("memory", name, "floor (weights + adapter state + activations)", case["memory_floor_bytes"],
            "GB" if device == "cuda" else "GiB")  # fmt: skip
        if "text_encoder_s" in case:
            share = case["text_encoder_s"] / step
            add("lever", name, "text encoder share of a step (saved by caching its outputs)", share, "%")
            share = case["collate_s"] / step
            add("lever", name, "collator share of a step (most dataloader workers could save)", share, "%")
        if spec["compile"]:
            add("lever", name, "first step incl. compilation", case["first_step_s"], "s")

    by_name = _by_name(cases)
    memory_key, memory_unit = ("peak_allocated_bytes", "GB") if device == "cuda" else ("peak_rss_training_bytes", "GiB")
    prefix = "small, " if device == "cuda" else ""  # the GPU plan's musicgen-small cases
    pairs = [  # (lever, case before, case after, measurement)
        ("cast frozen base: step time, fp32 -> bf16", "bf16 autocast, fp32 base", "bf16 base", "trainer_full_speed_step_s"),
        ("cast frozen base: peak memory, fp32 -> bf16", "bf16 autocast, fp32 base", "bf16 base", memory_key),
        ("SDPA: step time, eager -> sdpa", "bf16 base, eager attention", "bf16 base", "trainer_full_speed_step_s"),
        ("fused AdamW: Trainer step, foreach -> fused", "bf16 base, foreach AdamW", "bf16 base", "trainer_full_speed_step_s"),
        ("checkpointing: step time, off -> on", "bf16 base", "bf16 base, checkpointing", "trainer_full_speed_step_s"),
        ("checkpointing: peak memory, off -> on", "bf16 base", "bf16 base, checkpointing", memory_key),
        ("torch.compile: step time, eager mode -> compiled", "bf16 base", "bf16 base, torch.compile", "trainer_full_speed_step_s"),
        ("bf16: step time, fp32 -> bf16 base", "fp32", "bf16 base", "trainer_full_speed_step_s"),
        ("packed-bits LoRA dropout and no fp32 LoRA inputs: step time", "bf16 base, PEFT's dropout and casts",
         "bf16 base", "trainer_full_speed_step_s"),
        ("decoder_dropout: step time, 0.1 -> 0", "bf16 base", "bf16 base, decoder_dropout 0", "trainer_full_speed_step_s"),
        ("lora_dropout: step time, 0.05 -> 0", "bf16 base", "bf16 base, lora_dropout 0", "trainer_full_speed_step_s"),
    ]  # fmt: skip
    for label, before, after, key in pairs:
        before, after = by_name.get(prefix + before, {}), by_name.get(prefix + after, {})
        if key in before and key in after:
            unit = "s" if key.endswith("_s") else memory_unit  # step times: taken at full speed
            add("lever", label, f"{_fmt(before[key], unit)} -> {_fmt(after[key], unit)}", after[key] / before[key], "x")

    for part, error in results.get("errors", {}).items():
        add("error", part, error[:80], math.nan, "")
    optimizer = results.get("optimizer")
    if optimizer:
        label = f"AdamW on {optimizer['params'] / 1e6:.1f} M LoRA params"
        add("lever", label, "step, foreach", optimizer["adamw_torch"], "ms")
        add("lever", label, "step, fused", optimizer["adamw_torch_fused"], "ms")

    padding = results.get("padding")
    if padding:
        add("padding", "random order", "padded positions", padding["random"], "%")
        add("padding", "group_by_length", "padded positions", padding["group_by_length"], "%", f"< {TARGET_PADDING:.0%}",
            padding["group_by_length"] < TARGET_PADDING)  # fmt: skip

    prep = results.get("preparation")
    if prep:
        runs = prep["runs"]
        for run in runs:
            label = f"{run['multiple']}x ({run['audio_s']:.0f} s of audio)"
            add("preparation", label, "audio s per wall s", run["audio_s_per_s"], "")
        for run in runs:
            add("preparation", f"{run['multiple']}x", "cache-hit rerun ÷ first run", run["rerun_fraction"], "%",
                f"<= {TARGET_RERUN:.0%}", run["rerun_fraction"] <= TARGET_RERUN)  # fmt: skip
        for small, large in ((runs[0], runs[-1]), (runs[-2], runs[-1])) if len(runs) > 2 else ((runs[0], runs[-1]),):
            deviation = abs(large["audio_s_per_s"] / small["audio_s_per_s"] - 1)
            add("preparation", f"{large['multiple']}x vs {small['multiple']}x", "throughput deviation", deviation, "%",
                f"<= {TARGET_SCALING:.0%}", deviation <= TARGET_SCALING)  # fmt: skip
        # a straight line through the first and last sizes: its intercept is the per-run start-up (loading the
        # model, hashing the codec), paid once whatever the corpus size
        first, last = runs[0], runs[-1]
        per_audio_s = (last["first_s"] - first["first_s"]) / (last["audio_s"] - first["audio_s"])
        add("preparation", "start-up of a run", "intercept of time vs audio", first["first_s"] - per_audio_s * first["audio_s"],
            "s")  # fmt: skip
    return rows


def format_table(results: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    info = results["machine"]
    head = (
        f"musicgen_lora.bench ({'tiny model: ' + results['scale'] if results['quick'] else 'real sizes'}) on "
        f"{results['device']}: {info.get('gpu', info['cpu'])}, {info['threads']} threads, torch {info['torch']}, "
        f"transformers {info['transformers']}, peft {info['peft']}"
    )
    columns = [
        (r["section"], r["config"], r["metric"], _fmt(r["value"], r["unit"]), r["target"],
         "" if r["reached"] is None else ("yes" if r["reached"] else "NO")) for r in rows
    ]  # fmt: skip
    header = ("section", "configuration", "metric", "value", "target", "reached")
    widths = [max(len(str(x[i])) for x in [header, *columns]) for i in range(len(header))]
    lines = [head, "  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in columns]
    return "\n".join(lines)


def run_suite(scale: str, device: str, out: Path | None, case_timeout: float = 1200.0) -> dict[str, Any]:
    """Every measurement at ``scale`` (see SCALES); returns the results (also written to ``out`` as JSON)."""
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda needs a CUDA GPU, and torch.cuda.is_available() is false here; use --device cpu")
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
    results["cases"] = []
    with tempfile.TemporaryDirectory(prefix="musicgen-bench-") as workdir:
        if device == "cpu":  # CPU cases load a saved model as training does (GPU cases build theirs in memory)
            saved = {}
            for case in cases:
                if case.architecture not in saved:
                    saved[case.architecture] = str(save_random_model(case.architecture, Path(workdir)))
                case.model_dir = saved[case.architecture]
        for case in cases:
            logger.info("bench: %s ...", case.name)
            if scale == "smoke":  # one process: fast, but the memory peaks of the cases mix
                results["cases"].append(run_case(case, Path(workdir) / f"case-{len(results['cases'])}"))
            else:
                # compilation can take longer than all the other cases together: bounded, reported if it runs out
                timeout = min(case_timeout, 420) if case.compile else case_timeout
                results["cases"].append(run_case_in_subprocess(case, timeout))
            if out is not None:  # what is measured so far, in case the run is cut short
                _write(out, results)
        clips, batch, window = (96, 4, 2.0) if quick else (512, 8, 30.0)
        base_clips, seconds = (1, 1.0) if quick else (6, 5.0)  # 1x: 30 s of audio
        parts = {
            "optimizer": lambda: optimizer_bench("tiny" if quick else "small", steps=5 if quick else 20),
            "padding": lambda: padding_bench(clips, batch, window, Path(workdir)),
        }
        if device == "cpu":  # preparation runs on the CPU (EnCodec on CUDA is a separate question, see RESULTS.md)
            parts["preparation"] = lambda: preparation_bench(
                base_clips, seconds, [1, 4, 16], Path(workdir), real_codec=scale != "smoke"
            )
        for name, measure in parts.items():
            logger.info("bench: %s ...", name)
            try:
                results[name] = measure()
            except Exception as err:  # noqa: BLE001 - one failed part must not lose the others' numbers
                if scale == "smoke":
                    raise
                logger.exception("bench: %s failed", name)
                results.setdefault("errors", {})[name] = f"{type(err).__name__}: {err}"[:300]
    with contextlib.suppress(OSError, AttributeError):
        results["machine"]["load_average_end"] = os.getloadavg()
    rows = rows_of(results)
    results["rows"] = rows
    results["table"] = format_table(results, rows)
    if out is not None:
        _write(out, results)
    return results


def _write(out: Path, results: dict[str, Any]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, default=str) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> dict[str, Any]:

    parser = argparse.ArgumentParser(prog="python -m musicgen_lora.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny model, few steps: a smoke test of every measurement")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where the training steps run")
    parser.add_argument("--out", default="bench/results.json", help="JSON file for every number (default %(default)s)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # one case, in a fresh process (JSON of a Case)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        logging.basicConfig(level=logging.WARNING)
        result = run_case(Case(**json.loads(args.worker)), Path(args.workdir))
        print(json.dumps(result))
        return result
    setup_logging()
    with exit_on_user_error(argv):
        results = run_suite("quick" if args.quick else "full", args.device, Path(args.out) if args.out else None)
        print(results["table"])
        return results
