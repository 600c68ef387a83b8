"""The comparison run of ``evaluate.py``: every model renders the same prompts with the same seeds; everything is
measured and written (see :mod:`musicgen_lora.evaluate` for the metrics)."""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedModel, ProcessorMixin

from ..audio import analysis
from ..audio.io import write_wav
from ..config.arguments import ModelArguments
from ..files import atomic_write_json, atomic_write_text
from ..generate.render import captured_codes, generate_audio, generated_codes
from ..logs import progress
from ..memorisation.check import CopyChecker
from ..models.codec import decode_codes, encodec_latents
from ..models.loading import is_melody_model, load_model_and_processor, pick_device
from ..models.spec import AudioSpec, chroma_frames_per_code_frame
from ..prepare.cache_keys import module_fingerprint
from ..train.collator import MusicgenCollator
from .data import DatasetSpec, EvalData, EvalSettings, load_eval_data, load_training_codes
from .metrics import FRECHET_NOTE, adherence, audio_health, frechet_block, mean_of, pairwise_distance, summarise
from .models import BASE, ClapScorer, ModelSpec, adapted, heldout_cross_entropy
from .prompts import Prompt
from .report import write_report
from .spectrogram import write_spectrogram_png

logger = logging.getLogger(__name__)


@dataclass
class _Bench:
    """What every model of one evaluation is measured against: the base model, the data and its references."""

    settings: EvalSettings
    out: Path
    device: torch.device
    base: PreTrainedModel
    processor: ProcessorMixin
    spec: AudioSpec
    collator: MusicgenCollator
    eval_data: list[EvalData]
    checker: CopyChecker | None  # the training data indexed for the memorisation check (None: no training data)
    clap: ClapScorer | None
    reference_latents: dict[str, list[np.ndarray]]
    reference_descriptors: dict[str, list[np.ndarray]]


@dataclass
class _ModelOutputs:
    """One model's block of metrics, its per-file records and the frames its clips were measured on."""

    block: dict[str, Any]
    records: list[dict[str, Any]] = field(default_factory=list)
    latents: list[np.ndarray] = field(default_factory=list)
    descriptors: list[np.ndarray] = field(default_factory=list)
    clip_vectors: dict[int, list[np.ndarray]] = field(default_factory=dict)  # per prompt: each clip's mean descriptor


def run_evaluation(settings: EvalSettings) -> dict[str, Any]:
    """Generate, measure and report; see the package docstring.

    Returns:
        ``{"output_dir", "metrics", "records", "report"}``.
    """
    started = time.perf_counter()
    bench = _set_up(settings)
    outputs = {spec.name: _evaluate_model(bench, spec) for spec in [ModelSpec(BASE, None, "base"), *settings.models]}
    _compare_models(bench, outputs)
    records = [record for output in outputs.values() for record in output.records]
    metrics = _metrics(bench, {name: output.block for name, output in outputs.items()}, started)
    out = bench.out
    atomic_write_json(out / "metrics.json", _jsonable(metrics), indent=2)
    atomic_write_text(out / "comparison_results.jsonl", "".join(json.dumps(_jsonable(r)) + "\n" for r in records))
    report = write_report(out, metrics, records)
    logger.info("Wrote %d files, metrics.json and %s in %.1f s", len(records), report, time.perf_counter() - started)
    for line in summary_lines(metrics):
        logger.info(line)
    return {"output_dir": str(out), "metrics": metrics, "records": records, "report": str(report)}


def _set_up(settings: EvalSettings) -> _Bench:
    """Load the base model, the evaluation data (with its reference audio's latents and descriptors) and the
    training codes."""
    out = Path(settings.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = pick_device(settings.device)
    base, processor = load_model_and_processor(
        ModelArguments(model_name_or_path=settings.base_model, cache_dir=settings.cache_dir)
    )
    base.to(device).eval()
    spec = AudioSpec.of(base)
    codec = module_fingerprint(base.audio_encoder)
    eval_data = [load_eval_data(settings, d, base, processor, codec) for d in settings.eval_datasets]
    decoder_config = base.config.decoder
    collator = MusicgenCollator(
        tokenizer=processor.tokenizer,
        pad_token_id=decoder_config.pad_token_id,
        decoder_start_token_id=decoder_config.decoder_start_token_id,
        max_frames=spec.frames(settings.max_duration_in_seconds),
        random_crop=False,
        audio_channels=decoder_config.audio_channels,
        chroma_per_frame=(
            chroma_frames_per_code_frame(processor.feature_extractor, spec) if is_melody_model(base) else None
        ),
    )
    training = load_training_codes(settings, base, codec)
    checker = None
    if training is not None:  # indexed once; the melody index decodes every training clip with the base's EnCodec
        checker = CopyChecker.from_dataset(
            training,
            spec.frame_rate,
            (lambda c: decode_codes(base, c)) if settings.melody_check else None,
            spec.sampling_rate,
            copy_threshold=settings.copy_threshold,
            melody_threshold=settings.melody_threshold,
        )
    return _Bench(
        settings,
        out,
        device,
        base,
        processor,
        spec,
        collator,
        eval_data,
        checker,
        clap=ClapScorer(settings.clap_model, device) if settings.clap_model else None,
        reference_latents={d.spec.name: [encodec_latents(base, a) for a in d.reference_audio] for d in eval_data},
        reference_descriptors={
            d.spec.name: [analysis.frame_descriptors(a, spec.sampling_rate) for a in d.reference_audio]
            for d in eval_data
        },
    )


def _evaluate_model(bench: _Bench, model_spec: ModelSpec) -> _ModelOutputs:
    """One model: its held-out cross-entropy (and, for an adapter, with the adapter disabled), then every prompt
    rendered and measured."""
    settings = bench.settings
    logger.info("Evaluating model '%s'%s", model_spec.name, f" ({model_spec.path})" if model_spec.path else "")
    output = _ModelOutputs({"path": model_spec.path, "kind": model_spec.kind})
    with adapted(bench.base, model_spec, settings.cache_dir) as model:
        output.block["cross_entropy"] = {
            d.spec.name: {
                **heldout_cross_entropy(model, d.windows, bench.collator, settings.batch_size),
                "windows": len(d.windows),
                "held_out": d.spec.held_out,
            }
            for d in bench.eval_data
        }
        if model_spec.kind == "lora":
            with model.disable_adapter():
                output.block["cross_entropy_adapter_disabled"] = {
                    d.spec.name: heldout_cross_entropy(model, d.windows, bench.collator, settings.batch_size)
                    for d in bench.eval_data
                }
        prompts = progress(iterable=settings.prompts, desc=f"Rendering with {model_spec.name}", unit="prompt")
        for index, prompt in enumerate(prompts):
            _render_prompt(bench, model, model_spec, index, prompt, output)
    output.block.update(summarise(output.records))
    return output


def _render_prompt(
    bench: _Bench, model: torch.nn.Module, model_spec: ModelSpec, index: int, prompt: Prompt, output: _ModelOutputs
) -> None:
    """Render one prompt's samples with ``model`` and measure each clip into ``output``."""
    settings, sr = bench.settings, bench.spec.sampling_rate
    model_dir = bench.out / model_spec.name
    model_dir.mkdir(parents=True, exist_ok=True)
    seed = settings.seed + index
    with captured_codes(model) as calls:
        audio = generate_audio(
            model,
            bench.processor,
            [prompt.text] * settings.num_samples,
            settings.duration,
            guidance_scale=settings.guidance_scale,
            seed=seed,
        )  # (num_samples, channels, samples)
    codes = generated_codes(calls)  # (num_samples, K, T)
    clap_scores = bench.clap.score(prompt.text, list(audio), sr) if bench.clap else None
    for sample, clip in enumerate(audio):
        clean = np.nan_to_num(clip)
        wav = model_dir / f"{index}-{sample}.wav"
        png = wav.with_suffix(".png")
        write_wav(wav, clean, sr)
        write_spectrogram_png(png, clip, sr)
        record: dict[str, Any] = {
            "model": model_spec.name,
            "model_path": model_spec.path,
            "prompt_index": index,
            "prompt": prompt.text,
            "sample": sample,
            "seed": seed,
            "batch_row": sample,
            "path": wav.relative_to(bench.out).as_posix(),
            "spectrogram": png.relative_to(bench.out).as_posix(),
        }
        record.update(audio_health(clip, sr, settings.duration))
        record.update(adherence(clean, sr, prompt))
        if clap_scores is not None:
            record["clap_score"] = clap_scores[sample]
        if bench.checker is not None:
            record.update(_memorisation_fields(bench, codes[sample], clean, wav))
        descriptor = analysis.frame_descriptors(clean, sr)
        output.latents.append(encodec_latents(bench.base, clean))
        output.descriptors.append(descriptor)
        output.clip_vectors.setdefault(index, []).append(descriptor.mean(axis=0))
        output.records.append(record)


def _memorisation_fields(bench: _Bench, codes: np.ndarray, audio: np.ndarray, wav: Path) -> dict[str, Any]:
    """A clip's copy score and melody similarity against the training data; a flagged clip gets the training excerpt
    it copies decoded beside it (``<prompt>-<sample>.copied.wav``), to listen side by side."""
    record = bench.checker.score(codes, audio, bench.spec.sampling_rate)
    record["copied_run_seconds"] = record["copied_run_frames"] / bench.spec.frame_rate
    excerpt = bench.checker.excerpt_codes(record)
    if excerpt is not None and excerpt.shape[1]:
        copied = wav.with_suffix(".copied.wav")
        write_wav(copied, decode_codes(bench.base, excerpt), bench.spec.sampling_rate)
        record["copy_excerpt"] = copied.relative_to(bench.out).as_posix()
    return record


def _compare_models(bench: _Bench, outputs: dict[str, _ModelOutputs]) -> None:
    """Fréchet distances, diversity and memorisation, which need every model's outputs (and one common scale)."""
    vectors = [v for output in outputs.values() for vs in output.clip_vectors.values() for v in vs]
    scale = np.stack(vectors).std(axis=0) + 1e-9
    for output in outputs.values():
        block = output.block
        block["frechet"] = {
            d.spec.name: {
                "encodec_latent": frechet_block(output.latents, bench.reference_latents[d.spec.name]),
                "descriptor": frechet_block(output.descriptors, bench.reference_descriptors[d.spec.name]),
            }
            for d in bench.eval_data
        }
        per_prompt = [pairwise_distance([v / scale for v in vs]) for _, vs in sorted(output.clip_vectors.items())]
        block["diversity"] = {
            "pairwise_descriptor_distance_mean": mean_of(per_prompt),
            "per_prompt": per_prompt,
            "note": "mean distance between the samples of one prompt (clip-mean MFCC+chroma, each dimension divided "
            "by its spread over all generated clips); 0 means identical samples",
        }
        block["memorisation"] = None if bench.checker is None else bench.checker.summary(output.records)


def _metrics(bench: _Bench, blocks: dict[str, dict[str, Any]], started: float) -> dict[str, Any]:
    """``metrics.json``: the settings, one block per model, the adapter-disabled check, notes and the run time."""
    settings = bench.settings
    consistency = {}
    for name, block in blocks.items():
        disabled = block.get("cross_entropy_adapter_disabled")
        if disabled:
            consistency[name] = max(abs(disabled[d]["ce"] - blocks[BASE]["cross_entropy"][d]["ce"]) for d in disabled)
    return {
        "settings": {
            "base_model": settings.base_model,
            "models": {m.name: m.path for m in settings.models},
            "prompts": [p.__dict__ for p in settings.prompts],
            "duration": settings.duration,
            "num_samples": settings.num_samples,
            "seed": settings.seed,
            "guidance_scale": settings.guidance_scale,
            "sampling_rate": bench.spec.sampling_rate,
            "eval_datasets": [_describe_dataset(d) for d in settings.eval_datasets],
            "train_dataset": _describe_dataset(settings.train_dataset) if settings.train_dataset else None,
            "clap_model": settings.clap_model,
            "device": str(bench.device),
            "copy_threshold": settings.copy_threshold,
            "melody_threshold": settings.melody_threshold,
        },
        "models": blocks,
        "checks": {"adapter_disabled_ce_max_abs_diff_from_base": consistency},
        "notes": {"frechet": FRECHET_NOTE},
        "seconds": round(time.perf_counter() - started, 2),
    }


def _describe_dataset(spec: DatasetSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "source": spec.source,
        "split": spec.split,
        "held_out": spec.held_out,
        "prepared_as_in_training": spec.run_args is not None,
    }


def summary_lines(metrics: dict[str, Any]) -> list[str]:
    """One line per model with the headline numbers (first evaluation dataset), for the log."""
    lines = []
    for name, block in metrics["models"].items():
        parts = [f"{name}:"]
        for dataset, ce in list(block.get("cross_entropy", {}).items())[:1]:
            parts.append(f"ce[{dataset}]={ce['ce']:.4f}")
        for dataset, frechet in list(block.get("frechet", {}).items())[:1]:
            value = frechet["encodec_latent"]["value"]
            parts.append(f"fd_latent[{dataset}]=" + ("n/a" if value is None else f"{value:.4g}"))
        adherence_block = block["adherence"]
        if adherence_block["files_with_target_bpm"]:
            parts.append(f"tempo_ok={adherence_block['tempo_within_4pct']:.0%}")
        if adherence_block["files_with_target_key"]:
            parts.append(f"key_score={adherence_block['key_score_mean']:.2f}")
        loudness = block["health"]["loudness_lufs_mean"]
        parts.append("loudness=" + ("silent" if loudness is None else f"{loudness:.1f} LUFS"))
        memorisation = block.get("memorisation")
        if memorisation and memorisation["copy_score"] is not None:
            parts.append(f"copy_score={memorisation['copy_score']:.2f}")
            if memorisation.get("copies") or memorisation.get("melody_copies"):
                parts.append("COPIES TRAINING DATA (see report.html)")
        lines.append(" ".join(parts))
    return lines


def _jsonable(value: Any) -> Any:
    """Plain JSON values: numpy scalars to Python, non-finite floats to None (JSON has no NaN/Infinity)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, Path):
        return str(value)
    return value
