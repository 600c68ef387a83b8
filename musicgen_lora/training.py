"""Training: the loss, the Trainer, and the run that ties config, data, model and outputs together."""

from __future__ import annotations

import contextlib
import json
import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import datasets
import torch
import torch.nn.functional as F
from transformers import PreTrainedModel, ProcessorMixin, Trainer, set_seed

from .callbacks import NONFINITE_FIX, NonFiniteError, NonFiniteGradientGuard, SeedPerProcess
from .collator import IGNORE_INDEX, MusicgenCollator
from .config import RESOLVED_CONFIG_NAME, ParsedConfig
from .data import AudioSpec, chroma_frames_per_code_frame, module_fingerprint, prepare_split
from .errors import UserError, one_line
from .modeling import add_trainable_parts, is_melody_model, load_model_and_processor
from .samples import SampleCallback

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
        """``ce_q1..ce_qK``, their mean ``ce`` and perplexity ``ppl`` over all processes (``reduce`` sums), then reset."""
        if self.sums is None:
            return {}
        sums, counts = reduce(self.sums), reduce(self.counts)
        self.sums = self.counts = None
        per_codebook = sums / counts.clamp(min=1)
        mean = float(sums.sum() / counts.sum().clamp(min=1))
        metrics = {f"{prefix}ce_q{k + 1}": float(v) for k, v in enumerate(per_codebook)}
        metrics.update({f"{prefix}ce": mean, f"{prefix}ppl": math.exp(min(mean, 50.0))})
        return metrics


class MusicgenTrainer(Trainer):
    """Trainer with MusicGen's loss: exact token-weighted mean over the whole optimizer step, per-codebook metrics.

    Trainer counts ``num_items_in_batch`` over all micro-batches of an optimizer step (and all processes) when a
    ``compute_loss_func`` is set, and then neither divides by the accumulation steps nor averages per micro-batch; so
    the gradient equals that of the mean loss over the whole global batch, whatever the batch size, accumulation steps
    and number of processes. MusicGen's own loss averages each micro-batch separately, over-weighting short clips.
    """

    def __init__(self, *args: Any, skip_nonfinite_batches: bool = False, **kwargs: Any) -> None:
        self.skip_nonfinite_batches = skip_nonfinite_batches
        self.skipped_batches = 0
        self.gradient_guard = NonFiniteGradientGuard(skip=skip_nonfinite_batches)
        callbacks = [*(kwargs.pop("callbacks", None) or []), self.gradient_guard, SeedPerProcess()]
        super().__init__(*args, compute_loss_func=self._codebook_loss, callbacks=callbacks, **kwargs)
        self._train_stats = CodebookStats()
        self._eval_stats = CodebookStats()

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
                raise NonFiniteError(f"training stopped: the loss became NaN or infinite at step {step}; {NONFINITE_FIX}")
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

    def get_eval_dataloader(self, eval_dataset: Any = None) -> Any:
        with self._deterministic_collator():
            return super().get_eval_dataloader(eval_dataset)

    def get_test_dataloader(self, test_dataset: Any) -> Any:
        with self._deterministic_collator():
            return super().get_test_dataloader(test_dataset)

    def _sum_over_processes(self, tensor: torch.Tensor) -> torch.Tensor:
        return self.accelerator.reduce(tensor.to(self.accelerator.device), reduction="sum").cpu()

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:  # a training log: add the codebooks' cross-entropy since the last one
            logs.update(self._train_stats.report(self._sum_over_processes))
        super().log(logs, start_time)

    def evaluation_loop(self, dataloader, description, prediction_loss_only=None, ignore_keys=None, metric_key_prefix="eval"):
        self._eval_stats = CodebookStats()
        output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix)
        metrics = self._eval_stats.report(self._sum_over_processes, prefix=f"{metric_key_prefix}_")
        if metrics:
            # Trainer's eval loss averages per-batch means; the true mean weights every target equally.
            metrics[f"{metric_key_prefix}_loss"] = metrics.pop(f"{metric_key_prefix}_ce")
        output.metrics.update(metrics)
        return output


def build_trainer(
    parsed: ParsedConfig,
    model: torch.nn.Module,
    processor: ProcessorMixin,
    train_dataset: datasets.Dataset,
    eval_dataset: datasets.Dataset | None,
) -> Trainer:
    """A ``transformers.Trainer`` wired with the delay-pattern collator, the correctly scaled loss and the samples."""
    args, training = parsed.args, parsed.training
    decoder_config = model.config.decoder
    collator = MusicgenCollator(
        tokenizer=processor.tokenizer,
        pad_token_id=decoder_config.pad_token_id,
        decoder_start_token_id=decoder_config.decoder_start_token_id,
        max_frames=int(args.max_duration_in_seconds * model.config.audio_encoder.frame_rate),
        random_crop=True,
        text_dropout_prob=args.text_dropout_prob,
        audio_channels=decoder_config.audio_channels,
        chroma_per_frame=(
            chroma_frames_per_code_frame(processor.feature_extractor, AudioSpec.of(model)) if is_melody_model(model) else None
        ),
        chroma_dropout_prob=args.chroma_dropout_prob,
    )
    callbacks: list[SampleCallback] = []
    if args.sample_prompts:
        callbacks.append(
            SampleCallback(
                processor, args.sample_prompts, seconds=args.sample_duration_in_seconds,
                guidance_scale=args.guidance_scale, seed=training.seed, every_steps=args.sample_every_steps,
            )  # fmt: skip
        )
    try:
        trainer = MusicgenTrainer(
            model=model,
            args=training,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            data_collator=collator,
            skip_nonfinite_batches=args.skip_nonfinite_batches,
            callbacks=callbacks,
            # No processing_class: Trainer would copy the *text* tokenizer's pad/eos ids into the config and
            # generation config of the *audio* decoder (align_special_tokens). The processor is saved by run_training.
        )
    except ValueError as err:  # e.g. eval_strategy without eval data
        raise UserError(f"cannot set up training: {one_line(err)}; check eval_split_name and the *_strategy options") from None
    for callback in callbacks:
        callback.attach(trainer)  # before the reporting integrations, so it can still log at the end of training
    return trainer


def prepare_datasets(
    parsed: ParsedConfig, model: PreTrainedModel, processor: ProcessorMixin
) -> tuple[datasets.Dataset, datasets.Dataset | None]:
    """Encoded train (and eval) splits; with several processes the main one encodes first, the others reuse its cache."""
    args = parsed.args
    chroma_extractor = processor.feature_extractor if is_melody_model(model) else None
    with parsed.training.main_process_first(desc="encoding the dataset"):
        codec_fingerprint = module_fingerprint(model.audio_encoder)
        train = prepare_split(args, args.train_split_name, model, codec_fingerprint, False, chroma_extractor)
        evaluation = (
            prepare_split(args, args.eval_split_name, model, codec_fingerprint, True, chroma_extractor)
            if args.eval_split_name
            else None
        )
    return train, evaluation


def run_training(parsed: ParsedConfig) -> dict[str, Any]:
    """Load, encode, train (rendering samples before, during and after), save.

    Returns:
        ``{"output_dir", "train": metrics, "eval": metrics or None, "samples": [paths], "model": trained model,
        "log_history": Trainer's logged records}``.
    """
    args, training = parsed.args, parsed.training
    set_seed(training.seed)
    model, processor = load_model_and_processor(args)
    train_dataset, eval_dataset = prepare_datasets(parsed, model, processor)
    model = add_trainable_parts(model, args)
    trainer = build_trainer(parsed, model, processor, train_dataset, eval_dataset)

    output_dir = Path(training.output_dir)
    train_result = trainer.train(resume_from_checkpoint=training.resume_from_checkpoint)
    trainer.save_model()  # LoRA: adapter_config.json + adapter_model.safetensors; full: the whole model
    trainer.log_metrics("train", train_result.metrics)
    trainer.save_metrics("train", train_result.metrics)
    trainer.save_state()
    eval_metrics = None
    if eval_dataset is not None:
        eval_metrics = trainer.evaluate()
        trainer.log_metrics("eval", eval_metrics)
        trainer.save_metrics("eval", eval_metrics)

    if trainer.is_world_process_zero():
        processor.save_pretrained(output_dir)
        (output_dir / RESOLVED_CONFIG_NAME).write_text(json.dumps(parsed.requested, indent=2) + "\n", encoding="utf-8")
    # samples/final/ was written by SampleCallback at the end of training (main process only)
    sampler = next((cb for cb in trainer.callback_handler.callbacks if isinstance(cb, SampleCallback)), None)
    samples = [str(p) for p in sampler.final_paths] if sampler is not None else []
    if training.push_to_hub:
        trainer.push_to_hub()
    return {
        "output_dir": str(output_dir),
        "train": train_result.metrics,
        "eval": eval_metrics,
        "samples": samples,
        "model": trainer.model,
        "log_history": trainer.state.log_history,
    }
