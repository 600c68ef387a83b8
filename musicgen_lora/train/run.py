"""The training run: config, data, model and outputs tied together (build the Trainer, train, save, card, push)."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
from pathlib import Path
from typing import Any

import datasets
import torch
from accelerate import PartialState
from safetensors import SafetensorError
from transformers import PreTrainedModel, ProcessorMixin, Trainer, set_seed

from ..compat import warn_about_untested_versions
from ..config.arguments import ParsedConfig
from ..config.dependencies import check_logins
from ..config.parsing import with_absolute_local_paths
from ..errors import Interrupted, UserError, one_line
from ..files import cache_root, ensure_writable_folder, hub_id_of, readable_weights
from ..hub.card import PLOT_NAME, fix_adapter_config, write_model_card
from ..hub.upload import PushRequest, push_folder, take_push_request
from ..logs import apply_process_log_level, progress_bars
from ..models.loading import check_melody_options, is_melody_model, load_model_and_processor
from ..models.spec import AudioSpec, chroma_frames_per_code_frame
from ..prepare.pipeline import load_or_prepare
from .callbacks import NonFiniteError
from .checkpoints import CHECKPOINT_PATTERN, CheckpointNotSaved, keep_best, newest_complete_checkpoint
from .collator import MusicgenCollator
from .lora import add_trainable_parts, cast_frozen_base, check_lora_targets, frozen_base_dtype
from .optimizer_steps import warn_if_few_steps
from .output_dir import check_output_dir, run_lock, set_previous_run_aside, settle_previous_run
from .plots import plot_loss_curves_if_possible
from .progress_log import ProgressLog
from .rerun import config_written_for_this_run, finished_run_results, plan_rerun
from .samples import SampleCallback
from .stopping import StopOnSignal
from .trainer import MusicgenTrainer

logger = logging.getLogger(__name__)


def build_trainer(
    parsed: ParsedConfig,
    model: torch.nn.Module,
    processor: ProcessorMixin,
    train_dataset: datasets.Dataset,
    eval_dataset: datasets.Dataset | None,
    **trainer_options: Any,
) -> Trainer:
    """A ``transformers.Trainer`` wired with the delay-pattern collator, the correctly scaled loss and the samples.

    Args:
        trainer_options: further keyword arguments of :class:`~.trainer.MusicgenTrainer` (e.g. for the benchmark).
    """
    training = parsed.training
    decoder_config = model.config.decoder
    spec = AudioSpec.of(model)
    collator = MusicgenCollator(
        tokenizer=processor.tokenizer,
        pad_token_id=decoder_config.pad_token_id,
        decoder_start_token_id=decoder_config.decoder_start_token_id,
        max_frames=spec.frames(parsed.data.max_duration_in_seconds),
        random_crop=True,
        text_dropout_prob=training.text_dropout_prob,
        audio_channels=decoder_config.audio_channels,
        chroma_per_frame=(
            chroma_frames_per_code_frame(processor.feature_extractor, spec) if is_melody_model(model) else None
        ),
        chroma_dropout_prob=training.chroma_dropout_prob,
        seed=training.seed,
        process_index=training.process_index,
    )
    if training.train_sampling_strategy in ("group_by_length", "batch_rebalance"):
        train_dataset = with_window_lengths(train_dataset, collator.max_frames, training.length_column_name)
        if eval_dataset is not None:  # Trainer groups evaluation batches by length too
            eval_dataset = with_window_lengths(eval_dataset, collator.max_frames, training.length_column_name)
    callbacks: list[SampleCallback] = []
    if training.sample_prompts:
        callbacks.append(
            SampleCallback(
                processor,
                training.sample_prompts,
                seconds=training.sample_duration_in_seconds,
                guidance_scale=training.guidance_scale,
                seed=training.seed,
                every_steps=training.sample_every_steps,
                copy_threshold=training.copy_threshold,
            )
        )
    try:
        trainer = MusicgenTrainer(
            model=model,
            args=training,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            data_collator=collator,
            skip_nonfinite_batches=training.skip_nonfinite_batches,
            callbacks=callbacks,
            **trainer_options,
            # No processing_class: Trainer would copy the *text* tokenizer's pad/eos ids into the config and
            # generation config of the *audio* decoder (align_special_tokens). The processor is saved by run_training.
        )
    except ValueError as err:  # e.g. eval_strategy without eval data
        raise UserError(
            f"cannot set up training: {one_line(err)}; check eval_split_name and the *_strategy options"
        ) from None
    for callback in callbacks:
        callback.attach(trainer)  # before the reporting integrations, so it can still log at the end of training
    trainer.add_callback(ProgressLog())  # last: it reports the samples rendered at the step it sees end
    return trainer


def with_window_lengths(dataset: datasets.Dataset, max_frames: int, column: str) -> datasets.Dataset:
    """The dataset with a ``column`` of each clip's training window length in frames, which Trainer's
    ``train_sampling_strategy: group_by_length`` reads to batch clips of similar length (less padding)."""
    if column in dataset.column_names:
        return dataset

    def lengths(codes: list) -> dict[str, list]:
        return {column: [min(len(clip[0]), max_frames) for clip in codes]}  # each clip's codes: (K, frames)

    return dataset.map(lengths, batched=True, input_columns=["codes"], desc="Measuring clip lengths")


def load_datasets(
    parsed: ParsedConfig, model: PreTrainedModel, processor: ProcessorMixin, resume: str | None = None
) -> tuple[datasets.Dataset, datasets.Dataset | None]:
    """Encoded train (and eval) splits from OUTPUT_DIR/prepared_data, prepared first when missing or stale (see
    :func:`musicgen_lora.prepare.pipeline.load_or_prepare`); with several processes each encodes a share of the
    audio, the main one assembles the splits and the others load them. A stopped run that the same command
    continues (``resume`` found without resume_from_checkpoint) must find the data it was trained on."""
    asked = str(parsed.training.resume_from_checkpoint or "").lower() not in ("", "false")
    return load_or_prepare(parsed, model, processor, continuing=None if asked else resume)


def train_with_clear_errors(trainer: Trainer, resume: str | None) -> Any:
    """``trainer.train``, with a full disk or a checkpoint from another model reported as one-line errors."""
    if resume is not None:  # continue the collator's random draws where the checkpoint's batches ended
        state = json.loads((Path(resume) / "trainer_state.json").read_text(encoding="utf-8"))
        trainer.data_collator.batches_collated = state["global_step"] * trainer.args.gradient_accumulation_steps
    output_dir = trainer.args.output_dir
    try:
        return trainer.train(resume_from_checkpoint=resume)
    except CheckpointNotSaved as err:
        raise UserError(failed_save_message(err.checkpoint, err.cause, output_dir)) from None
    except NonFiniteError as err:
        last = newest_complete_checkpoint(output_dir)
        saved = f"the checkpoint before it, '{last}', is intact" if last else "no checkpoint was saved before it"
        raise NonFiniteError(f"{err}; {saved}") from None
    except OSError as err:
        if err.errno != errno.ENOSPC:
            raise
        raise UserError(failed_save_message(Path(output_dir), err, output_dir)) from None
    except RuntimeError as err:
        if resume is None or "size mismatch" not in str(err):
            raise
        detail = next((line.strip() for line in str(err).splitlines() if "size mismatch" in line), "")
        raise UserError(
            f"checkpoint '{resume}' was trained on another base model ({detail[:200]}); resume with the "
            "model_name_or_path it was trained on, or start a new run"
        ) from None


def failed_save_message(target: Path, cause: BaseException, output_dir: str | Path) -> str:
    """The one line for a save into ``target`` that failed (a full disk, most likely): what, why, and how the same
    command continues (from the newest complete checkpoint, or from the start without one)."""
    full = getattr(cause, "errno", None) == errno.ENOSPC or any(
        sign in str(cause) for sign in ("No space left", "os error 28")
    )
    what = "disk full while saving" if full else f"saving failed ({one_line(cause)[:160]}; is the disk full?) for"
    removed = " (its partial folder was removed)" if CHECKPOINT_PATTERN.match(target.name) else ""
    last = newest_complete_checkpoint(output_dir)
    then = f"to continue from '{last}'" if last else "(no checkpoint is complete yet: it starts from the beginning)"
    return (
        f"{what} '{target}'{removed}; free some space (or lower save_total_limit), then run the same command again "
        f"{then}"
    )


def run_training(parsed: ParsedConfig) -> dict[str, Any]:
    """Load, encode, train (rendering samples before, during and after), save; nothing in output_dir lost.

    Returns:
        ``{"output_dir", "train": metrics, "eval": metrics or None, "samples": [paths], "model": trained model,
        "log_history": Trainer's logged records, "hub_url": url or None}``.

    Raises:
        UserError: bad input (before any file is touched where possible), a failed save or push; Interrupted (exit
            130) after Ctrl-C or SIGTERM, with a checkpoint saved.
    """
    training = parsed.training
    apply_process_log_level(training)
    warn_about_untested_versions()  # a library outside the range musicgen_lora/compat.py was tested on
    check_logins(training)  # a reporting account, before any data is prepared or model loaded
    push = take_push_request(parsed)  # checked before training; the token leaves the arguments the Trainer saves
    plan = plan_rerun(
        training.output_dir, parsed.requested, training.resume_from_checkpoint, training.overwrite_output_dir
    )
    resume = plan.resume
    check_output_dir(training.output_dir, parsed.data.dataset_name, plan.start_over, bool(resume) or plan.finished)
    # the main process writes finetune_config.json next: every process must have read output_dir as it was before,
    # or a slower one takes this run's fresh config for a previous run's (a no-op with one process)
    PartialState().wait_for_everyone()
    if plan.finished:
        return _already_finished(training.output_dir, push)
    ensure_writable_folder(cache_root(parsed.data.data_cache_dir), "data_cache_dir")
    is_main = training.process_index == 0
    with run_lock(training.output_dir, active=is_main):
        aside = set_previous_run_aside(training.output_dir) if is_main and plan.start_over else None
        config = with_absolute_local_paths(parsed.requested)
        written = config_written_for_this_run(training.output_dir, config) if is_main else contextlib.nullcontext()
        try:
            with written, progress_bars(not training.disable_tqdm):
                trainer, processor, train_result, eval_metrics = _train(parsed, resume)
        except BaseException as err:
            note = settle_previous_run(aside, training.output_dir, succeeded=False)
            if note and isinstance(err, UserError):
                err.args = (f"{err}; {note}",)
            elif note:
                logger.warning("Training failed: %s", note)
            raise
        settle_previous_run(aside, training.output_dir, succeeded=True)
        return _outputs(parsed, trainer, processor, train_result, eval_metrics, push)


def _already_finished(output_dir: str, push: PushRequest | None) -> dict[str, Any]:
    """The results of the finished run in output_dir, which the same command asked for again: nothing is trained."""
    results = finished_run_results(output_dir)
    loss = results["train"].get("train_loss")
    logger.warning(
        "The run in %s already finished with this config (train loss %s): nothing to train. Start over with "
        "overwrite_output_dir true, or train more with a new max_steps and resume_from_checkpoint true.",
        output_dir,
        f"{loss:.4f}" if isinstance(loss, float) else "not recorded",
    )
    if push is not None:
        logger.warning(
            "Not pushed again; to push it, run: python -m musicgen_lora.push %s --repo_id %s", output_dir, push.repo_id
        )
    return results


def _train(parsed: ParsedConfig, resume: str | None) -> tuple[Trainer, ProcessorMixin, Any, dict[str, float] | None]:
    """Load the model, check its LoRA targets, prepare (or reuse) the data, train and save the weights and metrics.

    Raises:
        Interrupted: a stop signal arrived; the checkpoint it saved is named.
    """
    lora_args, training = parsed.lora, parsed.training
    set_seed(training.seed)
    base_dtype = frozen_base_dtype(parsed.model, training)
    # with LoRA the whole base is frozen: load it in half precision directly (no fp32 copy), EnCodec in fp32
    model, processor = load_model_and_processor(
        parsed.model, dtype=base_dtype if lora_args.use_lora else None, train_text_encoder=lora_args.train_text_encoder
    )
    check_lora_targets(model, lora_args)  # before the data is prepared: a bad option costs no file
    check_melody_options(model, parsed)
    train_dataset, eval_dataset = load_datasets(parsed, model, processor, resume)
    warn_if_few_steps(len(train_dataset), training, parsed.data.chunk_long_tracks)  # before the first step
    cast_frozen_base(model, base_dtype, lora_args)  # full fine-tuning: the text encoder; EnCodec stays fp32
    model = add_trainable_parts(model, lora_args)
    trainer = build_trainer(parsed, model, processor, train_dataset, eval_dataset)
    stopper = StopOnSignal()
    trainer.add_callback(stopper)
    with stopper.listening():
        train_result = train_with_clear_errors(trainer, resume)
    if stopper.signal_name is not None:
        step, total = trainer.state.global_step, trainer.state.max_steps
        checkpoint = newest_complete_checkpoint(training.output_dir)
        then = (  # without a checkpoint the same command starts over (see train/rerun.py): say so, not "continue"
            f"the checkpoint is '{checkpoint}': run the same command again to continue from it"
            if checkpoint
            else "no checkpoint was written (stopped before the first step ended or after the last): the same command "
            "starts over"
        )
        raise Interrupted(f"stopped by {stopper.signal_name} at step {step} of {total}; {then}")
    try:
        trainer.save_model()  # LoRA: adapter_config.json + adapter_model.safetensors; full: the whole model
    except (OSError, RuntimeError, SafetensorError) as err:
        raise UserError(failed_save_message(Path(training.output_dir), err, training.output_dir)) from None
    # what training ran in, for the card: on a CPU a requested fp16 ran in fp32 (the config keeps what was asked)
    train_result.metrics["precision"] = "bf16" if training.bf16 else "fp16" if training.fp16 else "fp32"
    trainer.log_metrics("train", train_result.metrics)
    trainer.save_metrics("train", train_result.metrics)
    trainer.save_state()
    eval_metrics = None
    if eval_dataset is not None:
        eval_metrics = trainer.evaluate()
        trainer.log_metrics("eval", eval_metrics)
        trainer.save_metrics("eval", eval_metrics)
    return trainer, processor, train_result, eval_metrics


def _outputs(
    parsed: ParsedConfig,
    trainer: Trainer,
    processor: ProcessorMixin,
    train_result: Any,
    eval_metrics: dict[str, float] | None,
    push: PushRequest | None,
) -> dict[str, Any]:
    """The rest of the run's files on the main process (processor, best/, its config, card, plot), the push, and the
    result (see :func:`run_training`)."""
    output_dir = Path(parsed.training.output_dir)
    hub_url = None
    if trainer.is_world_process_zero():
        readable_weights(output_dir)  # the adapter, checkpoints and best/ (safetensors 0.8 writes them 0600)
        processor.save_pretrained(output_dir)
        best = keep_best(trainer.state.best_model_checkpoint, output_dir)
        if best is not None:
            processor.save_pretrained(best)
            logger.info("Best checkpoint (%s) kept as %s", trainer.state.best_model_checkpoint, best)
        model_args = parsed.model
        log_history = trainer.state.log_history
        # Hub id in adapter_config.json, loss_curves.png, README.md card, push
        hub_url = finish_run(output_dir, model_args.model_name_or_path, model_args.base_model_id, log_history, push)[
            "hub_url"
        ]
    # samples/final/ was written by SampleCallback at the end of training (main process only)
    sampler = next((cb for cb in trainer.callback_handler.callbacks if isinstance(cb, SampleCallback)), None)
    return {
        "output_dir": str(output_dir),
        "train": train_result.metrics,
        "eval": eval_metrics,
        "samples": [str(p) for p in sampler.final_paths] if sampler is not None else [],
        "model": trainer.model,
        "log_history": trainer.state.log_history,
        "hub_url": hub_url,
    }


def finish_run(
    output_dir: str | Path,
    model_name_or_path: str | None,
    base_model_id: str | None,
    log_history: list[dict[str, Any]],
    push: PushRequest | None,
) -> dict[str, Any]:
    """After training, on the main process: Hub id into ``adapter_config.json``, loss plot, model card, push.

    Returns:
        ``{"card": path, "plot": path or None, "hub_url": url or None}``.

    Raises:
        UserError: the push failed (everything else is written by then; the message says how to retry).
    """

    output_dir = Path(output_dir)
    base_id = hub_id_of(model_name_or_path, base_model_id)
    if fix_adapter_config(output_dir, base_id) and base_id:  # (without an id: the local base's absolute path)
        logger.info("adapter_config.json names the base model by its Hub id, %s", base_id)
    plot = plot_loss_curves_if_possible(log_history, output_dir / PLOT_NAME)
    card = write_model_card(output_dir, push.repo_id if push else None)
    url = push_folder(output_dir, push.repo_id, token=push.token, private=push.private) if push else None
    return {"card": str(card), "plot": str(plot) if plot else None, "hub_url": url}
