"""The comparison run of ``evaluate.py``: every model renders the same prompts with the same seeds; everything is
measured, each adapter is compared with the base model (paired bootstrap intervals and a verdict), and everything is
written (see :mod:`musicgen_lora.evaluate` for the metrics)."""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..files import atomic_write_json, atomic_write_text
from ..logs import progress
from .comparison import Comparison, Evidence
from .context import EvalContext, set_up
from .data import DatasetSpec, EvalSettings
from .frechet import ClipStats, fad_infinity
from .metrics import FRECHET_NOTE, mean_of, pairwise_distance, summarise
from .models import BASE, ModelSpec, adapted, heldout_cross_entropy
from .render import Clip, render_model
from .report import write_report

logger = logging.getLogger(__name__)


@dataclass
class ModelOutputs:
    """One model's block of metrics, its clips, its per-window cross-entropy and its clips' Fréchet statistics."""

    block: dict[str, Any]
    clips: list[Clip] = field(default_factory=list)
    windows: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    clip_stats: dict[str, ClipStats] = field(default_factory=dict)

    @property
    def records(self) -> list[dict[str, Any]]:
        return [clip.record for clip in self.clips]

    def evidence(self) -> Evidence:
        """What the comparison with the base needs (after :func:`model_level_metrics`)."""
        return Evidence(self.records, self.windows, self.block["diversity"]["per_prompt"], self.clip_stats)


def run_evaluation(settings: EvalSettings) -> dict[str, Any]:
    """Generate, measure, compare and report; see the package docstring.

    Returns:
        ``{"output_dir", "metrics", "records", "report"}``.
    """
    started = time.perf_counter()
    context = set_up(settings)
    specs = [ModelSpec(BASE, None, "base"), *settings.models]
    outputs: dict[str, ModelOutputs] = {}
    with progress(total=len(specs) * len(settings.prompts), desc="Rendering", unit="prompt") as bar:
        for spec in specs:
            outputs[spec.name] = evaluate_model(context, spec, bar)
    model_level_metrics(context, outputs)
    comparison = _compare(context, outputs)
    records = [record for output in outputs.values() for record in output.records]
    metrics = _metrics(context, {name: output.block for name, output in outputs.items()}, comparison, started)
    out = context.out
    atomic_write_json(out / "metrics.json", _jsonable(metrics), indent=2)
    atomic_write_text(out / "comparison_results.jsonl", "".join(json.dumps(_jsonable(r)) + "\n" for r in records))
    report = write_report(out, _jsonable(metrics), _jsonable(records))
    logger.info("Wrote %d files, metrics.json and %s in %.1f s", len(records), report, time.perf_counter() - started)
    for line in summary_lines(metrics):
        logger.info(line)
    return {"output_dir": str(out), "metrics": metrics, "records": records, "report": str(report)}


def evaluate_model(context: EvalContext, model_spec: ModelSpec, bar: Any) -> ModelOutputs:
    """One model: its held-out cross-entropy (and, for an adapter, with the adapter disabled), then every clip of the
    grid rendered and measured."""
    settings = context.settings
    logger.info("Evaluating model '%s'%s", model_spec.name, f" ({model_spec.path})" if model_spec.path else "")
    output = ModelOutputs({"path": model_spec.path, "kind": model_spec.kind})
    with adapted(context.base, model_spec, settings.cache_dir) as model:
        output.block["cross_entropy"] = {}
        for data in context.eval_data:
            values, output.windows[data.spec.name] = heldout_cross_entropy(
                model, data.windows, context.collator, settings.batch_size
            )
            output.block["cross_entropy"][data.spec.name] = {
                **values, "windows": len(data.windows), "held_out": data.spec.held_out
            }  # fmt: skip
        if model_spec.kind == "lora":
            with model.disable_adapter():
                output.block["cross_entropy_adapter_disabled"] = {
                    d.spec.name: heldout_cross_entropy(model, d.windows, context.collator, settings.batch_size)[0]
                    for d in context.eval_data
                }
        output.clips = render_model(context, model, model_spec, bar)
    output.block.update(summarise(output.records))
    for name in list(output.clips[0].embeddings) if output.clips else []:
        output.clip_stats[name] = ClipStats.of([clip.embeddings.pop(name) for clip in output.clips])
    return output


def model_level_metrics(context: EvalContext, outputs: dict[str, ModelOutputs]) -> None:
    """Fréchet distances (and FAD∞), diversity, per-song FAD and memorisation, which need all of a model's clips
    (and, for the diversity, one scale common to every model)."""
    vectors = [clip.vector for output in outputs.values() for clip in output.clips]
    scale = np.stack(vectors).std(axis=0) + 1e-9
    samples = context.settings.num_samples
    for output in outputs.values():
        block = output.block
        block["frechet"] = {
            dataset: {
                embedding: _frechet_block(output.clip_stats[embedding], reference)
                for embedding, reference in references.items()
            }
            for dataset, references in context.references.items()
        }
        vectors = [clip.vector / scale for clip in output.clips]
        per_prompt = [pairwise_distance(vectors[i : i + samples]) for i in range(0, len(vectors), samples)]
        block["diversity"] = {
            "pairwise_descriptor_distance_mean": mean_of(per_prompt),
            "per_prompt": per_prompt,
            "note": "mean distance between the samples of one prompt (clip-mean MFCC+chroma, each dimension divided "
            "by its spread over all generated clips); 0 means identical samples",
        }
        if context.training_reference is not None:
            block["per_song_fad"] = {
                "mean": mean_of([r.get("per_song_fad") for r in output.records]),
                "note": "each clip's own Fréchet distance to the training files (Gui et al. 2024), on the EnCodec "
                "quantiser's embeddings of their codes; lower is closer to the training music",
            }
        block["memorisation"] = None if context.checker is None else context.checker.summary(output.records)


def _frechet_block(stats: ClipStats, reference: Any) -> dict[str, Any]:
    block: dict[str, Any] = {
        "generated_clips": len(stats.counts),
        "generated_frames": stats.frames,
        "reference_clips": reference.clips,
        "reference_frames": reference.frames,
        "dim": stats.dim,
    }
    enough = stats.frames >= 2
    block["value"] = float(stats.distances(reference.gaussian, np.ones((1, len(stats.counts))))[0]) if enough else None
    block["reliable"] = bool(min(stats.frames, reference.frames) >= 2 * stats.dim)  # a full-rank covariance
    if enough and len(stats.counts) >= 2:
        found = fad_infinity(stats, reference.gaussian)
        block["fad_inf"] = {
            "value": float(found["values"][0]),
            "slope": float(found["slopes"][0]),
            "r2": float(found["r2"][0]),
            "subset_clips": found["sizes"],
        }
    return block


def reference_gaussians(context: EvalContext) -> dict[str, dict[str, Any]]:
    """Per evaluation dataset and embedding, the reference Gaussian of the Fréchet distances."""
    return {
        dataset: {name: reference.gaussian for name, reference in found.items()}
        for dataset, found in context.references.items()
    }


def _compare(context: EvalContext, outputs: dict[str, ModelOutputs]) -> dict[str, Any]:
    """Each other model against the base: ``metrics.json["comparison"][name]`` (see :mod:`.comparison`)."""
    settings = context.settings
    references = reference_gaussians(context)
    comparison = Comparison(
        outputs[BASE].evidence(), references, len(settings.prompts), settings.num_samples,
        settings.bootstrap_resamples, settings.bootstrap_seed,
    )  # fmt: skip
    return {name: comparison.compare(output.evidence()) for name, output in outputs.items() if name != BASE}


def _metrics(
    context: EvalContext, blocks: dict[str, dict[str, Any]], comparison: dict[str, Any], started: float
) -> dict[str, Any]:
    """``metrics.json``: the settings, one block per model, each other model's comparison with the base, the
    adapter-disabled check, what was left out, notes and the run time."""
    settings = context.settings
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
            "generation_batch_size": settings.generation_batch_size,
            "sampling_rate": context.spec.sampling_rate,
            "eval_datasets": [_describe_dataset(d) for d in settings.eval_datasets],
            "train_dataset": _describe_dataset(settings.train_dataset) if settings.train_dataset else None,
            "clap_model": settings.clap_model,
            "device": str(context.device),
            "copy_threshold": settings.copy_threshold,
            "melody_threshold": settings.melody_threshold,
            "bootstrap_resamples": settings.bootstrap_resamples,
            "bootstrap_seed": settings.bootstrap_seed,
        },
        "models": blocks,
        "comparison": comparison,
        "checks": {"adapter_disabled_ce_max_abs_diff_from_base": consistency},
        "left_out": list(context.left_out),
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
