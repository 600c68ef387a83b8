"""The benchmark's table: the results of a run turned into rows (section, configuration, metric, value, unit, target,
reached), each target of issue #7 checked where it applies, and the rows formatted as one aligned text table.

Step times are compared at full speed where the run recorded the probed throughput around each step (the CPU plan;
:func:`~.measure.full_speed_steps`), MFU against the best matmul throughput measured anywhere in the run."""

from __future__ import annotations

import math
from typing import Any

from .measure import full_speed_steps, median_or_nan

GIB = 2**30


# Targets of issue #7 (each row of the table says whether it is reached).
TARGET_OVERHEAD = 0.95


TARGET_MFU_CPU_BF16 = 0.70


TARGET_MFU_GPU = 0.45


TARGET_CPU_GIB = 3.0


TARGET_GPU_MELODY_GB = 6.0


TARGET_SCALING = 0.10


TARGET_RERUN = 0.02


TARGET_MEMORISATION_S = 10.0  # 10 h of training codes against 100 clips "take seconds"
TARGET_PADDING = 0.05


# (lever, case before, case after, measurement) compared by the table; the GPU plan's cases carry a "small, " prefix
LEVERS = [
    ("cast frozen base: step time, fp32 -> bf16", "bf16 autocast, fp32 base", "bf16 base", "trainer_full_speed_step_s"),
    ("cast frozen base: peak memory, fp32 -> bf16", "bf16 autocast, fp32 base", "bf16 base", "memory"),
    ("SDPA: step time, eager -> sdpa", "bf16 base, eager attention", "bf16 base", "trainer_full_speed_step_s"),
    ("fused AdamW: Trainer step, foreach -> fused", "bf16 base, foreach AdamW", "bf16 base",
     "trainer_full_speed_step_s"),
    ("checkpointing: step time, off -> on", "bf16 base", "bf16 base, checkpointing", "trainer_full_speed_step_s"),
    ("checkpointing: peak memory, off -> on", "bf16 base", "bf16 base, checkpointing", "memory"),
    ("torch.compile: step time, eager mode -> compiled", "bf16 base", "bf16 base, torch.compile",
     "trainer_full_speed_step_s"),
    ("bf16: step time, fp32 -> bf16 base", "fp32", "bf16 base", "trainer_full_speed_step_s"),
    ("packed-bits LoRA dropout and no fp32 LoRA inputs: step time", "bf16 base, PEFT's dropout and casts",
     "bf16 base", "trainer_full_speed_step_s"),
    ("decoder_dropout: step time, 0.1 -> 0", "bf16 base", "bf16 base, decoder_dropout 0", "trainer_full_speed_step_s"),
    ("lora_dropout: step time, 0.05 -> 0", "bf16 base", "bf16 base, lora_dropout 0", "trainer_full_speed_step_s"),
]  # fmt: skip


_FORMATS = {  # unit -> how a value in base units (fraction, bytes, seconds) is printed
    "%": lambda v: f"{100 * v:.1f} %",
    "GiB": lambda v: f"{v / GIB:.2f} GiB",
    "GB": lambda v: f"{v / 1e9:.2f} GB",
    "s": lambda v: f"{v:.3g} s",
    "ms": lambda v: f"{1000 * v:.3g} ms",
    "x": lambda v: f"{v:.3f}",
}


def format_value(value: float, unit: str) -> str:
    """``value`` (in base units: fraction, bytes, seconds) as printed in ``unit``; "nan" when it is missing."""
    if value is None or not math.isfinite(value):
        return "nan"
    return _FORMATS[unit](value) if unit in _FORMATS else f"{value:.4g} {unit}".strip()


class _Rows:
    """The table's rows as they are added."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def add(
        self, section: str, config: str, metric: str, value: Any, unit: str, target: str = "", reached: Any = None
    ) -> None:
        """Add a row; a value that is not a number becomes NaN (printed "nan")."""
        value = float(value) if isinstance(value, (int, float)) else math.nan
        self.rows.append(
            dict(section=section, config=config, metric=metric, value=value, unit=unit, target=target, reached=reached)
        )


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
    """Table rows: section, configuration, metric, value (number), unit, target (text), reached (bool or None).

    Also records in each case what the levers compare: ``trainer_full_speed_step_s`` and, where a sibling case of the
    same shape counted them, ``flops_per_step``."""
    device = results["device"]
    peaks = best_peaks(results)
    rows = _Rows()
    for precision, peak in peaks.items():
        rows.add("peak", f"matmul {precision}", "best measured in the run", peak / 1e12, "TFLOP/s")
    cases = results["cases"]
    for case in cases:
        if "error" in case:
            rows.add("error", case["case"]["name"], case["error"][:80], math.nan, "")
            continue
        _speed_rows(rows, case, cases, peaks[case["case"]["precision"]], device)
        _memory_rows(rows, case, device)
    _lever_rows(rows, cases, device)
    for part, error in results.get("errors", {}).items():
        rows.add("error", part, error[:80], math.nan, "")
    _optimizer_rows(rows, results.get("optimizer"))
    _padding_rows(rows, results.get("padding"))
    _preparation_rows(rows, results.get("preparation"))
    _memorisation_rows(rows, results.get("memorisation"))
    return rows.rows


def _speed_rows(rows: _Rows, case: dict[str, Any], cases: list[dict[str, Any]], peak: float, device: str) -> None:
    """A case's step time (at full speed where probed), throughput, Trainer overhead and MFU."""
    name, spec = case["case"]["name"], case["case"]
    step = case["trainer_step_s"]
    rows.add("speed", name, "step (Trainer, median of all)", step, "s")
    if spec.get("reference_peak"):  # the full CPU plan: only steps taken at full speed are compared
        fast_trainer, fast_bare = full_speed_steps(case, peak)
        timed = len(case.get("trainer_steps_s") or [])
        rows.add("speed", name, f"timed steps that ran at full speed, of {timed}", len(fast_trainer), "")
    else:
        fast_trainer, fast_bare = case.get("trainer_steps_s") or [], case.get("bare_steps_s") or []
    full = median_or_nan(fast_trainer) if fast_trainer else step  # else: no step at full speed, all steps
    if fast_trainer:
        case["trainer_full_speed_step_s"] = full  # what the levers compare
        if spec.get("reference_peak"):
            rows.add("speed", name, "step at full speed (median)", full, "s")
    rows.add(
        "speed",
        name,
        "frames/s (Trainer, " + ("at full speed)" if fast_trainer else "all steps)"),
        case["frames_per_step"] / full,
        "",
    )
    if "bare_step_s" in case:
        ratio = median_or_nan(fast_bare) / full if fast_bare else case["bare_step_s"] / step
        rows.add(
            "overhead",
            name,
            "Trainer ÷ bare frames/s" + (", full speed" if fast_bare else ", all steps"),
            ratio,
            "x",
            f">= {TARGET_OVERHEAD}",
            ratio >= TARGET_OVERHEAD,
        )
    flops = case.get("flops_per_step") or _sibling_flops(cases, spec)
    if not flops:
        return
    case["flops_per_step"] = flops
    mfu = flops / full / peak
    target, reached = "", None
    if spec["precision"] != "fp32":
        goal = TARGET_MFU_GPU if device == "cuda" else TARGET_MFU_CPU_BF16
        target, reached = f">= {goal:.0%}", mfu >= goal
    rows.add(
        "MFU",
        name,
        f"{flops / 1e9:.4g} GFLOP / {'step at full speed' if fast_trainer else 'median step'} / "
        f"{peak / 1e12:.3g} TFLOP/s",
        mfu,
        "%",
        target,
        reached,
    )
    speeds = case.get("trainer_step_peaks")
    if speeds:  # against the matmul throughput probed around each step: the machine's speed at the time
        at_speed = median_or_nan([flops / (t * p) for t, p in zip(case["trainer_steps_s"], speeds, strict=False)])
        rows.add("MFU", name, "median over steps of FLOPs / (step time x probed throughput)", at_speed, "%")


def _memory_rows(rows: _Rows, case: dict[str, Any], device: str) -> None:
    """A case's memory peaks (GPU: allocated; CPU: RSS) beside its floor, and the times of the text encoder, the
    collator and compilation where measured."""
    name, spec = case["case"]["name"], case["case"]
    if device == "cuda":
        peak_mem = case["peak_allocated_bytes"]
        target, reached = "", None
        if spec["variant"] == "melody" and spec["checkpointing"]:
            target, reached = f"< {TARGET_GPU_MELODY_GB:g} GB", peak_mem < TARGET_GPU_MELODY_GB * 1e9
        rows.add("memory", name, "peak allocated", peak_mem, "GB", target, reached)
    else:
        target, reached = "", None
        if spec["checkpointing"] and spec["precision"] != "fp32":
            target, reached = f"< {TARGET_CPU_GIB:g} GiB", case["peak_rss_process_bytes"] < TARGET_CPU_GIB * GIB
        rows.add("memory", name, "peak RSS, training steps", case["peak_rss_training_bytes"], "GiB")
        rows.add("memory", name, "peak RSS, whole process", case["peak_rss_process_bytes"], "GiB", target, reached)
    rows.add(
        "memory",
        name,
        "floor (weights + adapter state + activations)",
        case["memory_floor_bytes"],
        "GB" if device == "cuda" else "GiB",
    )
    step = case["trainer_step_s"]
    if "text_encoder_s" in case:
        share = case["text_encoder_s"] / step
        rows.add("lever", name, "text encoder share of a step (saved by caching its outputs)", share, "%")
        share = case["collate_s"] / step
        rows.add("lever", name, "collator share of a step (most dataloader workers could save)", share, "%")
    if spec["compile"]:
        rows.add("lever", name, "first step incl. compilation", case["first_step_s"], "s")


def _sibling_flops(cases: list[dict[str, Any]], spec: dict[str, Any]) -> int | None:
    """The FLOPs counted for another case of the same model and batch shape (checkpointing does not change them)."""
    keys = ("architecture", "variant", "batch_size", "seconds")
    for other in cases:
        if "flops_per_step" in other and all(other["case"][k] == spec[k] for k in keys):
            return other["flops_per_step"]
    return None


def _lever_rows(rows: _Rows, cases: list[dict[str, Any]], device: str) -> None:
    """Each lever of :data:`LEVERS` whose two cases were measured: after ÷ before."""
    by_name = {c["case"]["name"]: c for c in cases}
    memory_key, memory_unit = ("peak_allocated_bytes", "GB") if device == "cuda" else ("peak_rss_training_bytes", "GiB")
    prefix = "small, " if device == "cuda" else ""  # the GPU plan's musicgen-small cases
    for label, before, after, key in LEVERS:
        key = memory_key if key == "memory" else key
        before, after = by_name.get(prefix + before, {}), by_name.get(prefix + after, {})
        if key in before and key in after:
            unit = "s" if key.endswith("_s") else memory_unit  # step times: taken at full speed
            rows.add(
                "lever",
                label,
                f"{format_value(before[key], unit)} -> {format_value(after[key], unit)}",
                after[key] / before[key],
                "x",
            )


def _optimizer_rows(rows: _Rows, optimizer: dict[str, float] | None) -> None:
    if optimizer:
        label = f"AdamW on {optimizer['params'] / 1e6:.1f} M LoRA params"
        rows.add("lever", label, "step, foreach", optimizer["adamw_torch"], "ms")
        rows.add("lever", label, "step, fused", optimizer["adamw_torch_fused"], "ms")


def _padding_rows(rows: _Rows, padding: dict[str, float] | None) -> None:
    if padding:
        rows.add("padding", "random order", "padded positions", padding["random"], "%")
        rows.add(
            "padding",
            "group_by_length",
            "padded positions",
            padding["group_by_length"],
            "%",
            f"< {TARGET_PADDING:.0%}",
            padding["group_by_length"] < TARGET_PADDING,
        )


def _preparation_rows(rows: _Rows, prep: dict[str, Any] | None) -> None:
    """Throughput per corpus size, the cache-hit reruns, the throughput's scaling and the per-run start-up."""
    if not prep:
        return
    runs = prep["runs"]
    for run in runs:
        label = f"{run['multiple']}x ({run['audio_s']:.0f} s of audio)"
        rows.add("preparation", label, "audio s per wall s", run["audio_s_per_s"], "")
    for run in runs:
        rows.add(
            "preparation",
            f"{run['multiple']}x",
            "cache-hit rerun ÷ first run",
            run["rerun_fraction"],
            "%",
            f"<= {TARGET_RERUN:.0%}",
            run["rerun_fraction"] <= TARGET_RERUN,
        )
    for small, large in ((runs[0], runs[-1]), (runs[-2], runs[-1])) if len(runs) > 2 else ((runs[0], runs[-1]),):
        deviation = abs(large["audio_s_per_s"] / small["audio_s_per_s"] - 1)
        rows.add(
            "preparation",
            f"{large['multiple']}x vs {small['multiple']}x",
            "throughput deviation",
            deviation,
            "%",
            f"<= {TARGET_SCALING:.0%}",
            deviation <= TARGET_SCALING,
        )
    # a straight line through the first and last sizes: its intercept is the per-run start-up (loading the model,
    # hashing the codec), paid once whatever the corpus size
    first, last = runs[0], runs[-1]
    per_audio_s = (last["first_s"] - first["first_s"]) / (last["audio_s"] - first["audio_s"])
    rows.add(
        "preparation",
        "start-up of a run",
        "intercept of time vs audio",
        first["first_s"] - per_audio_s * first["audio_s"],
        "s",
    )


def _memorisation_rows(rows: _Rows, memo: dict[str, Any] | None) -> None:
    """The copy-score index's build and query times and size, and the melody search's, at the benchmark's scale."""
    if not memo:
        return
    label = f"{memo['training_hours']:g} h of codes, {memo['clips']} clips"
    rows.add("memorisation", label, "index build (best)", memo["build"]["best_s"], "s")
    rows.add(
        "memorisation",
        label,
        "score every clip (best)",
        memo["query_all_clips"]["best_s"],
        "s",
        f"<= {TARGET_MEMORISATION_S:g} s",
        memo["query_all_clips"]["best_s"] <= TARGET_MEMORISATION_S,
    )
    rows.add("memorisation", label, "index size", memo["index_mb"], "MB")
    rows.add("memorisation", label, "peak memory while building", memo["build_peak_mb"], "MB")
    if "melody" in memo:
        rows.add(
            "memorisation",
            label,
            "melody search, every clip (best)",
            memo["melody"]["query_all_clips_mixed_lengths"]["best_s"],
            "s",
        )


def format_table(results: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """The rows as an aligned text table under a title naming the scale, device, machine and library versions."""
    info = results["machine"]
    head = (
        f"musicgen_lora.bench ({'tiny model: ' + results['scale'] if results['quick'] else 'real sizes'}) on "
        f"{results['device']}: {info.get('gpu', info['cpu'])}, {info['threads']} threads, torch {info['torch']}, "
        f"transformers {info['transformers']}, peft {info['peft']}"
    )
    columns = [
        (
            r["section"],
            r["config"],
            r["metric"],
            format_value(r["value"], r["unit"]),
            r["target"],
            "" if r["reached"] is None else ("yes" if r["reached"] else "NO"),
        )
        for r in rows
    ]
    header = ("section", "configuration", "metric", "value", "target", "reached")
    widths = [max(len(str(x[i])) for x in [header, *columns]) for i in range(len(header))]
    lines = [head, "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=False))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)).rstrip() for row in columns]
    return "\n".join(lines)
