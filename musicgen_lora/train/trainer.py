"""The Trainer for MusicGen: its loss (exact over the whole optimizer step), per-codebook metrics and guards."""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import datasets
import torch
import torch.nn.functional as F

from ..compat import LengthGroupedSampler, TrainerHooks, get_length_grouped_indices, lora_layers
from .callbacks import NONFINITE_FIX, NonFiniteError, NonFiniteGradientGuard, SeedPerProcess
from .checkpoints import CheckpointNotSaved
from .collator import IGNORE_INDEX
from .lora_speed import inputs_kept_in_autocast_dtype

logger = logging.getLogger(__name__)


def codebook_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed cross-entropy and number of targets, per codebook.

    Args:
        logits: (bsz * num_codebooks, steps, vocab), as MusicGen returns them.
        labels: (bsz, steps, num_codebooks), ``IGNORE_INDEX`` where there is no target.

    Returns:
        ``(sums, counts)``, each of shape (num_codebooks,).
    """
    bsz, steps, num_codebooks = labels.shape
    logits = logits.reshape(bsz, num_codebooks, logits.shape[-2], logits.shape[-1])[:, :, -steps:]  # (bsz, K, steps, V)
    targets = labels.permute(0, 2, 1)  # (bsz, K, steps)
    per_target = F.cross_entropy(
        logits.float().permute(0, 3, 1, 2), targets, ignore_index=IGNORE_INDEX, reduction="none"
    )  # (bsz, K, steps), 0 where ignored
    return per_target.sum(dim=(0, 2)), (targets != IGNORE_INDEX).sum(dim=(0, 2))


class CodebookStats:
    """Running per-codebook cross-entropy sums and target counts between two reports."""

    def __init__(self) -> None:
        self.sums: torch.Tensor | None = None
        self.counts: torch.Tensor | None = None

    def add(self, sums: torch.Tensor, counts: torch.Tensor) -> None:
        sums, counts = sums.detach().double(), counts.detach().double()
        self.sums = sums if self.sums is None else self.sums + sums
        self.counts = counts if self.counts is None else self.counts + counts

    def report(self, reduce: Any, prefix: str = "") -> dict[str, float]:
        """``ce_q1..ce_qK``, their mean ``ce`` and perplexity ``ppl`` over all processes (``reduce`` sums), then
        reset."""
        if self.sums is None:
            return {}
        sums, counts = reduce(self.sums), reduce(self.counts)
        self.sums = self.counts = None
        per_codebook = sums / counts.clamp(min=1)
        mean = float(sums.sum() / counts.sum().clamp(min=1))
        metrics = {f"{prefix}ce_q{k + 1}": float(v) for k, v in enumerate(per_codebook)}
        metrics.update({f"{prefix}ce": mean, f"{prefix}ppl": math.exp(min(mean, 50.0))})
        return metrics


class SeededLengthGroupedSampler(LengthGroupedSampler):
    """Trainer's length grouping (``train_sampling_strategy: group_by_length``: batches of clips of similar length,
    in random order) with an order that is a pure function of (seed, epoch), so a resumed run sees the same batches.

    transformers' sampler draws from the global random stream when iterated, which a resumed run restores to the
    checkpoint's state, not the epoch's start: its batches would differ from the uninterrupted run's.
    """

    def __init__(self, batch_size: int, lengths: list[int], seed: int) -> None:
        super().__init__(batch_size, lengths=lengths)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:  # called by Trainer at the start of every epoch
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(get_length_grouped_indices(self.lengths, self.batch_size, generator=generator))


class MusicgenTrainer(TrainerHooks):
    """Trainer with MusicGen's loss: exact token-weighted mean over the whole optimizer step, per-codebook metrics.

    (:class:`musicgen_lora.compat.TrainerHooks` turns the private Trainer methods it needs into the hooks below.)

    Trainer counts ``num_items_in_batch`` over all micro-batches of an optimizer step (and all processes) when a
    ``compute_loss_func`` is set, and then neither divides by the accumulation steps nor averages per micro-batch; so
    the gradient equals that of the mean loss over the whole global batch, whatever the batch size, accumulation steps
    and number of processes. MusicGen's own loss averages each micro-batch separately, over-weighting short clips.
    """

    def __init__(
        self,
        *args: Any,
        skip_nonfinite_batches: bool = False,
        lora_inputs_in_autocast_dtype: bool = True,
        **kwargs: Any,
    ) -> None:
        """Args: as ``Trainer``'s, plus ``skip_nonfinite_batches`` (skip a non-finite batch's update instead of
        stopping) and ``lora_inputs_in_autocast_dtype`` (False: PEFT's own fp32 round trip of the LoRA inputs under
        autocast, for comparing speed)."""
        self.skip_nonfinite_batches = skip_nonfinite_batches
        self.skipped_batches = 0
        self.gradient_guard = NonFiniteGradientGuard(skip=skip_nonfinite_batches)
        callbacks = [*(kwargs.pop("callbacks", None) or []), self.gradient_guard, SeedPerProcess()]
        super().__init__(*args, compute_loss_func=self._codebook_loss, callbacks=callbacks, **kwargs)
        self._train_stats = CodebookStats()
        self._eval_stats = CodebookStats()
        self._lora_layers = lora_layers(self.model) if lora_inputs_in_autocast_dtype else []

    def training_step(
        self, model: torch.nn.Module, inputs: dict[str, Any], num_items_in_batch: Any = None
    ) -> torch.Tensor:
        # Under bf16/fp16 autocast the adapters take the half-precision input as it is (see lora_speed).
        mixed = self.args.bf16 or self.args.fp16
        with inputs_kept_in_autocast_dtype(self._lora_layers, active=mixed):
            return super().training_step(model, inputs, num_items_in_batch)

    def _codebook_loss(
        self, outputs: Any, labels: torch.Tensor, num_items_in_batch: torch.Tensor | int | None = None
    ) -> torch.Tensor:
        sums, counts = codebook_cross_entropy(outputs.logits, labels)
        denominator = num_items_in_batch if num_items_in_batch is not None else counts.sum()
        if torch.is_tensor(denominator):
            denominator = denominator.to(sums.device)
        loss = sums.sum() / denominator
        if self.model.training and not torch.isfinite(loss):
            step = self.state.global_step + 1
            if not self.skip_nonfinite_batches:
                raise NonFiniteError(
                    f"training stopped: the loss became NaN or infinite at step {step}; {NONFINITE_FIX}"
                )
            logger.warning("Non-finite loss at step %d: batch skipped (skip_nonfinite_batches)", step)
            self.skipped_batches += 1
            # No gradient at all (NaN * 0 would still be NaN); not a leaf, since Trainer rescales the loss in place.
            return torch.zeros((), device=loss.device, requires_grad=True).clone()
        (self._train_stats if self.model.training else self._eval_stats).add(sums, counts)
        return loss

    @contextlib.contextmanager
    def _deterministic_collator(self) -> Iterator[None]:
        """Evaluation batches use fixed windows and keep every caption (no conditioning dropout)."""
        training_collator = self.data_collator
        self.data_collator = training_collator.for_evaluation()
        try:
            yield
        finally:
            self.data_collator = training_collator

    def train_sampler(self, dataset: Any) -> Any:
        column = self.args.length_column_name
        if (
            self.args.train_sampling_strategy == "group_by_length"
            and isinstance(dataset, datasets.Dataset)
            and column in dataset.column_names
        ):
            seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
            batch = self.args.train_batch_size * self.args.gradient_accumulation_steps
            return SeededLengthGroupedSampler(batch, list(dataset[column]), seed)
        return None  # Trainer's own

    def get_eval_dataloader(self, eval_dataset: Any = None) -> Any:
        with self._deterministic_collator():
            return super().get_eval_dataloader(eval_dataset)

    def get_test_dataloader(self, test_dataset: Any) -> Any:
        with self._deterministic_collator():
            return super().get_test_dataloader(test_dataset)

    def on_failed_checkpoint(self, folder: str, error: Exception) -> Exception:
        # A save that fails (disk full, ...) must not leave a half-written checkpoint-N behind.
        shutil.rmtree(folder, ignore_errors=True)
        return CheckpointNotSaved(Path(folder), error)

    def _sum_over_processes(self, tensor: torch.Tensor) -> torch.Tensor:
        return self.accelerator.reduce(tensor.to(self.accelerator.device), reduction="sum").cpu()

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:  # a training log: add the codebooks' cross-entropy since the last one
            logs.update(self._train_stats.report(self._sum_over_processes))
        super().log(logs, start_time)

    def before_evaluation(self) -> None:
        self._eval_stats = CodebookStats()

    def evaluation_metrics(self, prefix: str) -> dict[str, float]:
        metrics = self._eval_stats.report(self._sum_over_processes, prefix=f"{prefix}_")
        if metrics:
            # Trainer's eval loss averages per-batch means; the true mean weights every target equally.
            metrics[f"{prefix}_loss"] = metrics.pop(f"{prefix}_ce")
        return metrics
