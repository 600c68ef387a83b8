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
(crops, dropout, shuffling) with or without samples and ends with the same weights.

**Memorisation check.** At the start of training the callback indexes the training codes the Trainer holds
(:class:`~musicgen_lora.train.copy_score.CodeIndex`, about a second for 10 hours); every render's samples are then
scored (``copy_score``: the share of a sample's code frames that line up with one training clip) and logged through
``trainer.log`` as ``samples/copy_score`` (the highest) and ``samples/copy_score/<i>`` (so every tracker and
``trainer_state.json`` get them), with a warning naming the step when a sample reaches ``copy_threshold``, so a
user can stop before the adapter memorises. ``OUTPUT_DIR/memorisation.json`` keeps every render's scores and the
final figure, which the model card reports. (The melodic similarity of ``evaluate.py`` is not computed here: it
would decode the whole training set with EnCodec at every start.)"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import soundfile as sf
import torch
from peft import PeftModel
from transformers import ProcessorMixin, TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.integrations import TensorBoardCallback

from ..compat import insert_before_reporters
from ..files import atomic_write_json, read_json_object
from ..generate.render import captured_codes, generated_codes, write_samples
from ..hub.card import MEMORISATION_FILE
from ..rng import preserved_rng
from .copy_score import DEFAULT_COPY_THRESHOLD, CodeIndex

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
        copy_threshold: float | None = DEFAULT_COPY_THRESHOLD,
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
        self.copy_threshold = copy_threshold  # None: no memorisation check
        self.trainer: Any = None  # set by attach(): its train_dataset is indexed, its log() reaches every tracker
        self.index: CodeIndex | None = None
        self.memorisation: dict[str, Any] = {}

    def attach(self, trainer: Any) -> SampleCallback:
        """Run before the reporting integrations (see the class docstring); returns ``self``."""
        self.callbacks = trainer.callback_handler.callbacks
        self.trainer = trainer
        insert_before_reporters(trainer, self)
        return self

    # ------------------------------------------------------------------------------------------------ events

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs) -> None:
        self._start_step = state.global_step  # > 0 when resuming from a checkpoint
        self._base_done = False
        self.final_paths = []
        if (
            self.prompts
            and self.copy_threshold is not None
            and state.is_world_process_zero
            and self.trainer is not None
        ):
            self._start_memorisation_check(args, state, kwargs["model"])

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
            logger.info(
                "Resumed full fine-tuning: the base model is not at hand, so samples/base/ is not rendered again"
            )
        else:
            self._render(args, state, model, "base", "base")

    def _render(
        self, args: TrainingArguments, state: TrainerState, model: torch.nn.Module, folder: str, kind: str
    ) -> list[Path]:
        """Write ``output_dir/samples/<folder>/`` and log it; main process only, RNG state untouched."""
        if not self.prompts or not state.is_world_process_zero:
            return []
        out_dir = Path(args.output_dir) / "samples" / folder
        with preserved_rng(), captured_codes(model) as calls:
            paths = write_samples(
                model,
                self.processor,
                self.prompts,
                out_dir,
                seconds=self.seconds,
                guidance_scale=self.guidance_scale,
                seed=self.seed,
            )
        logger.info("Wrote %d samples to %s", len(paths), out_dir)
        self._log_audio(args, state, paths, kind)
        if self.index is not None:
            self._check_copies(args, state, generated_codes(calls), kind)
        return paths

    # ------------------------------------------------------------------------------------------------ memorisation

    def _start_memorisation_check(self, args: TrainingArguments, state: TrainerState, model: torch.nn.Module) -> None:
        """Index the training codes once; on resume, keep the scores of the renders before the checkpoint."""
        self.index = None
        dataset = getattr(self.trainer, "train_dataset", None)
        if not isinstance(dataset, datasets.Dataset) or "codes" not in dataset.column_names:
            logger.info("No indexable training codes (a streamed dataset?): the samples' copy score is not computed")
            return
        started = time.perf_counter()
        self.index = CodeIndex.from_dataset(dataset, frame_rate=model.config.audio_encoder.frame_rate)
        logger.info(
            "Indexed %d training clips for the samples' copy score in %.2f s",
            len(self.index),
            time.perf_counter() - started,
        )
        previous = read_json_object(Path(args.output_dir) / MEMORISATION_FILE) if self._start_step else {}
        renders = [r for r in previous.get("renders", []) if r.get("step", 0) < state.global_step]
        first = next(
            (r["step"] for r in renders if r["kind"] != "base" and r["copy_score"] >= self.copy_threshold), None
        )
        self.memorisation = {
            "copy_threshold": self.copy_threshold,
            "renders": renders,
            "first_step_at_threshold": first,
        }

    def _check_copies(self, args: TrainingArguments, state: TrainerState, codes: np.ndarray, kind: str) -> None:
        """Score one render's samples ((bsz, K, T) codes), log the scores, warn at the threshold, write the file."""
        matches = [self.index.match(clip) for clip in codes]
        scores = [m.score for m in matches]
        logs = {"samples/copy_score": max(scores), **{f"samples/copy_score/{i}": s for i, s in enumerate(scores)}}
        # to every tracker and trainer_state.json; Trainer's on_log clears control.should_log, which would swallow the
        # loss log due at this very step (we log from on_step_end, before Trainer logs the loss)
        should_log = self.trainer.control.should_log
        self.trainer.log({k: round(v, 4) for k, v in logs.items()})
        self.trainer.control.should_log = should_log
        step = state.global_step
        render = {
            "step": step,
            "kind": kind,
            "copy_score": round(max(scores), 4),
            "samples": [
                {"prompt": prompt, **match.record()} for prompt, match in zip(self.prompts, matches, strict=False)
            ],
        }
        self.memorisation["renders"].append(render)
        worst = int(np.argmax(scores))
        if kind != "base" and scores[worst] >= self.copy_threshold:
            self._warn_copy(step, worst, matches[worst])
        if kind == "final":
            self.memorisation["final"] = {
                "step": step,
                "copy_score": round(max(scores), 4),
                "copy_score_mean": round(float(np.mean(scores)), 4),
                "copies": sum(1 for s in scores if s >= self.copy_threshold),
                "samples": len(scores),
            }
        atomic_write_json(Path(args.output_dir) / MEMORISATION_FILE, self.memorisation, indent=2)

    def _warn_copy(self, step: int, sample: int, match: Any) -> None:
        """The warning of a sample at or above the threshold: the full advice at the first crossing, then short."""
        what = (
            f"sample {sample} ({self.prompts[sample]!r}) copies {100 * match.score:.0f} % of "
            f"{match.source or f'training example {match.example}'} from {match.offset_seconds:.1f} s"
        )
        if self.memorisation["first_step_at_threshold"] is None:
            self.memorisation["first_step_at_threshold"] = step
            logger.warning(
                "Memorisation at step %d: %s (copy_score %.2f >= copy_threshold %.2f). Stop here or keep an earlier "
                "checkpoint; more data, fewer steps or a lower learning rate keep the style without the copy.",
                step,
                what,
                match.score,
                self.copy_threshold,
            )
        else:
            logger.warning("Still memorising at step %d: %s (copy_score %.2f)", step, what, match.score)

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
            for index, (clip, prompt) in enumerate(zip(clips, self.prompts, strict=False))
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
            for index, (clip, prompt) in enumerate(zip(clips, self.prompts, strict=False))
        }
        trackio.log({**logs, "train/global_step": step})  # as TrackioCallback logs
