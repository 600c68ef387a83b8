"""The benchmark's measuring instruments: the machine's matmul throughput (:func:`matmul_peak`, :class:`PeakProbe`),
memory (peak RSS read and reset; the analytic floor of a LoRA step, :func:`memory_floor`), the FLOPs of a LoRA step
(:func:`count_step_flops`), and step timers: :class:`BareStep` (a plain PyTorch step) and :class:`StepTimer` (a
Trainer callback that times our Trainer's steps between probes), with the rule for steps taken at full speed
(:func:`full_speed_steps`), which the table applies too."""

from __future__ import annotations

import contextlib
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import TrainerCallback

from ..compat import attention_kernel
from ..train.trainer import codebook_cross_entropy

try:  # the fallback of peak_rss_bytes where /proc is missing (macOS); Windows has neither
    import resource
except ImportError:  # pragma: no cover - not on Linux/macOS
    resource = None

FULL_SPEED = 0.8  # a step ran at full speed when the matmul probes around it reach this share of the best seen


def synchronize(device: str) -> None:
    """Wait for the GPU's queued work (no-op on the CPU), so that a timer reads the work's end."""
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
    if resource is None:
        return 0
    unit = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is in bytes on macOS, in kB elsewhere
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * unit  # never reset


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
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    kernel = attention_kernel(base.config.decoder)
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
    """The autocast a step in ``precision`` (fp32 | bf16 | fp16) runs under; none for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def median_or_nan(values: list[float]) -> float:
    """The median, or NaN for no values (a case that timed nothing)."""
    return statistics.median(values) if values else math.nan


def full_speed_steps(case: dict[str, Any], best_peak: float) -> tuple[list[float], list[float]]:
    """The Trainer's and the bare loop's step times taken at full speed (probes around the step >= FULL_SPEED of the
    run's best). With a bare loop, only pairs (a Trainer step and the bare step after it) that both ran at full speed.

    ``case`` holds ``trainer_steps_s``, ``trainer_step_peaks`` and, with a bare loop, ``bare_steps_s`` and
    ``bare_step_peaks`` (a case's result, or a :class:`StepTimer`'s timings so far)."""
    trainer = list(zip(case.get("trainer_steps_s") or [], case.get("trainer_step_peaks") or [], strict=False))
    bare = list(zip(case.get("bare_steps_s") or [], case.get("bare_step_peaks") or [], strict=False))
    if bare:
        pairs = [
            (t, b) for (t, tp), (b, bp) in zip(trainer, bare, strict=False) if min(tp, bp) >= FULL_SPEED * best_peak
        ]
        return [t for t, _ in pairs], [b for _, b in pairs]
    return [t for t, p in trainer if p >= FULL_SPEED * best_peak], []


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

    def __init__(self, model: torch.nn.Module, batches: list[dict], device: str, precision: str) -> None:
        self.model, self.batches, self.device, self.precision = model, batches, device, precision
        self.scaler = torch.amp.GradScaler(device) if precision == "fp16" else None
        self.count = 0

    def __call__(self, optimizer: torch.optim.Optimizer) -> float:
        """Run the next batch's step; its seconds (moving the batch to the device included)."""
        optimizer = getattr(optimizer, "optimizer", optimizer)  # accelerate's wrapper -> the torch optimizer
        batch = self.batches[self.count % len(self.batches)]
        self.count += 1
        was_training = self.model.training
        self.model.train()
        synchronize(self.device)
        start = time.perf_counter()
        batch = {k: v.to(self.device) for k, v in batch.items()}
        labels = batch.pop("labels")
        with autocast_context(self.device, self.precision):
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
        synchronize(self.device)
        seconds = time.perf_counter() - start
        self.model.train(was_training)
        return seconds


class StepTimer(TrainerCallback):
    """Trainer callback: times every optimizer step of our Trainer and, between two of them, probes the machine's
    speed and runs one bare step (excluded from the Trainer's times); resets the memory peaks when training starts.

    Timeline: probe, Trainer step 0, probe, bare step 0, probe, Trainer step 1, probe, bare step 1, probe, ... so each
    step has a probe right before and right after it, and each Trainer step a bare step next to it.

    With a ``reference_peak`` (FLOP/s), training stops as soon as ``steps`` of the steps after the first ``warmup``
    ran at full speed (:func:`full_speed_steps` against the best of the reference and the probes so far).
    """

    def __init__(
        self,
        device: str,
        probe: Callable[[], float],
        bare: BareStep | None = None,
        *,
        warmup: int = 0,
        steps: int = 0,
        reference_peak: float = 0.0,
    ) -> None:
        self.device, self.probe, self.bare = device, probe, bare
        self.warmup, self.steps, self.reference_peak = warmup, steps, reference_peak
        self.trainer_steps: list[float] = []
        self.bare_steps: list[float] = []
        self.probes: list[float] = []
        self.start = math.nan
        self.resume = math.nan
        self.peak_before = 0

    def on_train_begin(self, *args: Any, **kwargs: Any) -> None:
        """Reset the memory peaks (the model is built by now), take the first probe, start the clock."""
        synchronize(self.device)
        if self.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        self.peak_before = peak_rss_bytes()  # building / loading / casting the model
        reset_peak_rss()
        self.probes.append(self.probe())
        self.start = self.resume = time.perf_counter()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Record the step's time, probe, run a bare step and probe again; stop once enough ran at full speed."""
        synchronize(self.device)
        self.trainer_steps.append(time.perf_counter() - self.resume)
        self.probes.append(self.probe())
        if self.bare is not None:
            self.bare_steps.append(self.bare(kwargs["optimizer"]))
            self.probes.append(self.probe())
        if self.reference_peak and self._enough_at_full_speed():
            control.should_training_stop = True
        synchronize(self.device)
        self.resume = time.perf_counter()

    def _enough_at_full_speed(self) -> bool:
        """The rule the table applies (:func:`full_speed_steps`), on the timed steps so far."""
        warmup = self.warmup
        trainer_peaks, bare_peaks = self.step_peaks()
        so_far = {
            "trainer_steps_s": self.trainer_steps[warmup:],
            "trainer_step_peaks": trainer_peaks[warmup:],
            "bare_steps_s": self.bare_steps[warmup:],
            "bare_step_peaks": bare_peaks[warmup:],
        }
        fast, _ = full_speed_steps(so_far, max(self.reference_peak, *self.probes))
        return len(fast) >= self.steps

    def step_peaks(self) -> tuple[list[float], list[float]]:
        """The machine's speed during each Trainer step and each bare step: the mean of the probes around it."""
        around = [(a + b) / 2 for a, b in zip(self.probes, self.probes[1:], strict=False)]
        if self.bare is None:
            return around, []
        return around[0::2], around[1::2]
