"""Trainer callbacks: stop (or skip) on non-finite gradients before they reach the weights."""

from __future__ import annotations

import logging

import torch
from accelerate.utils import set_seed
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from ..errors import UserError

logger = logging.getLogger(__name__)


# (the run adds which checkpoint, if any, was saved before: see run.train_with_clear_errors)
NONFINITE_FIX = "lower learning_rate, prefer bf16 to fp16, or set skip_nonfinite_batches to skip such batches"


class NonFiniteError(UserError):
    """Training produced NaN or infinity; the message names the step and the fixes."""


class NonFiniteGradientGuard(TrainerCallback):
    """Before each optimizer step: a NaN/inf gradient stops training, or with ``skip`` drops that step's update.

    Dropping sets every gradient to None, which makes torch optimizers leave the weights (and their moments) alone.
    Under fp16, the gradient scaler already skips overflowing steps, so the guard leaves them to it.
    """

    def __init__(self, skip: bool) -> None:
        self.skip = skip
        self.skipped_steps: list[int] = []

    def on_pre_optimizer_step(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs
    ) -> None:
        if args.fp16:
            return
        model, optimizer = kwargs["model"], kwargs["optimizer"]
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        if all(bool(torch.isfinite(g).all()) for g in grads):
            return
        step = state.global_step + 1
        if not self.skip:
            raise NonFiniteError(f"training stopped: a gradient became NaN or infinite at step {step}; {NONFINITE_FIX}")
        self.skipped_steps.append(step)
        logger.warning("Non-finite gradient at step %d: update skipped (skip_nonfinite_batches)", step)
        optimizer.zero_grad(set_to_none=True)


class SeedPerProcess(TrainerCallback):
    """Give each process its own random stream when training starts.

    Trainer seeds every process with the same ``seed``, so with several processes each rank would draw the same
    dropout masks for its (different) clips. accelerate's device-specific seed (``seed + process index``, for
    ``random``, numpy and torch) keeps runs reproducible while making those draws independent across ranks. (The
    collator's window crops and conditioning dropout have their own generator, keyed by process and batch, so that a
    resumed run draws them exactly as before.)
    """

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs) -> None:
        if args.world_size > 1:
            set_seed(args.seed, device_specific=True)
