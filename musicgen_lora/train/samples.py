"""Samples to listen to during training: the same prompts, the same seed, rendered as the weights change.

:class:`SampleCallback` renders ``sample_prompts`` with a fixed seed, so two renders differ only through the weights:

- ``samples/base/``: the base model, before the first optimizer step (through ``disable_adapter()`` for a LoRA model,
  so a resumed run still renders the true base);
- ``samples/step-N/``: every ``sample_every_steps`` optimizer steps (0: never);
- ``samples/final/``: at the end of training.

Each render is written by :func:`~musicgen_lora.generate.render.write_samples` (``N.wav`` + ``prompts.txt``) and logged,
with its prompts as captions, to the enabled ``report_to`` backends that take audio: TensorBoard (the writer of
transformers' ``TensorBoardCallback``), Weights & Biases and Trackio (their active run). Rendering runs on the main
process only and leaves the random number generators as it found them, so training draws the same random numbers
(crops, dropout, shuffling) with or without samples and ends with the same weights."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
from peft import PeftModel
from transformers import ProcessorMixin, TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.integrations import TensorBoardCallback
from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

from ..generate.render import write_samples
from ..rng import preserved_rng

logger = logging.getLogger(__name__)


def _is_peft_model(model: torch.nn.Module) -> bool:
    return isinstance(model, PeftModel)


class SampleCallback(TrainerCallback):
    """Render fixed prompts with a fixed seed before, during and after training, and log them as audio.

    Add it through ``Trainer(callbacks=[...])`` and then call :meth:`attach` with the trainer: that places it before
    the reporting integrations, whose ``on_train_end`` closes the TensorBoard writer (and finishes a Trackio run)
    before later callbacks run, and lets it find their writers. The base samples are rendered at the first step's
    ``on_step_begin`` (or at the end if no step runs), when every integration has set itself up in ``on_train_begin``.
    """

    def __init__(
        self,
        processor: ProcessorMixin,
        prompts: list[str],
        seconds: float,
        guidance_scale: float = 3.0,
        seed: int = 0,
        every_steps: int = 0,
    ) -> None:
        self.processor = processor
        self.prompts = list(prompts)
        self.seconds = seconds
        self.guidance_scale = guidance_scale
        self.seed = seed
        self.every_steps = every_steps
        self.callbacks: list[TrainerCallback] = []  # the trainer's callbacks, to find the reporting backends
        self.final_paths: list[Path] = []
        self._base_done = False
        self._start_step: int | None = None
        self._captions_logged = False

    def attach(self, trainer: Any) -> SampleCallback:
        """Run before the reporting integrations (see the class docstring); returns ``self``."""
        callbacks = trainer.callback_handler.callbacks
        self.callbacks = callbacks
        if self in callbacks:
            callbacks.remove(self)
        reporters = tuple(INTEGRATION_TO_CALLBACK.values())
        first = next((i for i, cb in enumerate(callbacks) if isinstance(cb, reporters)), len(callbacks))
        callbacks.insert(first, self)
        return self

    # ------------------------------------------------------------------------------------------------ events

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs) -> None:
        self._start_step = state.global_step  # > 0 when resuming from a checkpoint
        self._base_done = False
        self.final_paths = []

    def on_step_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs) -> None:
        if not self._base_done:
            self._render_base(args, state, kwargs["model"])

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs) -> None:
        if self.every_steps > 0 and state.global_step % self.every_steps == 0:
            self._render(args, state, kwargs["model"], f"step-{state.global_step}", "step")

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs) -> None:
        if state.global_step < state.max_steps:  # stopped early on request: the run is not final, render nothing
            return
        model = kwargs["model"]
        if not self._base_done:
            self._render_base(args, state, model)
        self.final_paths = self._render(args, state, model, "final", "final")

    # ------------------------------------------------------------------------------------------------ rendering

    def _render_base(self, args: TrainingArguments, state: TrainerState, model: torch.nn.Module) -> None:
        self._base_done = True
        if _is_peft_model(model):
            with model.disable_adapter():
                self._render(args, state, model, "base", "base")
        elif self._start_step:
            logger.info("Resumed full fine-tuning: the base model is not at hand, so samples/base/ is not rendered again")
        else:
            self._render(args, state, model, "base", "base")

    def _render(
        self, args: TrainingArguments, state: TrainerState, model: torch.nn.Module, folder: str, kind: str
    ) -> list[Path]:
        """Write ``output_dir/samples/<folder>/`` and log it; main process only, RNG state untouched."""
        if not self.prompts or not state.is_world_process_zero:
            return []
        out_dir = Path(args.output_dir) / "samples" / folder
        with preserved_rng():
            paths = write_samples(
                model, self.processor, self.prompts, out_dir,
                seconds=self.seconds, guidance_scale=self.guidance_scale, seed=self.seed,
            )  # fmt: skip
        logger.info("Wrote %d samples to %s", len(paths), out_dir)
        self._log_audio(args, state, paths, kind)
        return paths

    # ------------------------------------------------------------------------------------------------ backends

    def _log_audio(self, args: TrainingArguments, state: TrainerState, paths: list[Path], kind: str) -> None:
        """Send the clips just written to TensorBoard, W&B and Trackio (those enabled and running)."""
        report_to = args.report_to or []
        loggers = [
            ("tensorboard", self._log_tensorboard),
            ("wandb", self._log_wandb),
            ("trackio", self._log_trackio),
        ]
        if not any(name in report_to for name, _ in loggers):
            return

        clips = []
        rate = 0
        for path in paths:
            data, rate = sf.read(str(path), dtype="float32", always_2d=True)  # (samples, channels)
            clips.append(data.mean(axis=1))  # mono: TensorBoard takes one channel
        for name, log in loggers:
            if name not in report_to:
                continue
            try:
                log(clips, rate, state.global_step, kind)
            except Exception as err:  # a logging backend must never stop training
                logger.warning("Could not log the %s samples to %s: %s", kind, name, err)

    def _log_tensorboard(self, clips: list[np.ndarray], rate: int, step: int, kind: str) -> None:
        writer = next(
            (cb.tb_writer for cb in self.callbacks if isinstance(cb, TensorBoardCallback) and cb.tb_writer is not None),
            None,
        )
        if writer is None:
            return
        for index, clip in enumerate(clips):
            writer.add_audio(f"samples/{kind}/{index}", torch.from_numpy(clip), step, sample_rate=rate)
        if not self._captions_logged:  # TensorBoard audio has no caption: the prompts go in a text entry
            text = "\n".join(f"- `{index}`: {prompt}" for index, prompt in enumerate(self.prompts))
            writer.add_text("samples/prompts", text, step)
            self._captions_logged = True
        writer.flush()

    def _log_wandb(self, clips: list[np.ndarray], rate: int, step: int, kind: str) -> None:
        import wandb

        if wandb.run is None:
            return
        # No step=: wandb drops data logged at a step below its own counter, which WandbCallback advances on every
        # log. "train/global_step" is the x-axis WandbCallback defines for every key.
        logs: dict[str, Any] = {
            f"samples/{kind}/{index}": wandb.Audio(clip, sample_rate=rate, caption=prompt)
            for index, (clip, prompt) in enumerate(zip(clips, self.prompts))
        }
        wandb.log({**logs, "train/global_step": step})

    def _log_trackio(self, clips: list[np.ndarray], rate: int, step: int, kind: str) -> None:
        try:
            import trackio
        except ImportError:
            return
        if trackio.context_vars.current_run.get() is None:
            return
        # int16 as in the WAV files (read back as k / 32768): trackio would peak-normalise float audio
        logs: dict[str, Any] = {
            f"samples/{kind}/{index}": trackio.Audio(
                np.clip(np.round(clip * 32768), -32768, 32767).astype(np.int16), caption=prompt, sample_rate=rate
            )
            for index, (clip, prompt) in enumerate(zip(clips, self.prompts))
        }
        trackio.log({**logs, "train/global_step": step})  # as TrackioCallback logs
