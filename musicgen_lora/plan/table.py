"""The README's "Which GPU" table and the example presets, both from the planner:

    python -m musicgen_lora.plan.table            # prints the table (README.md holds it between its markers)
    python -m musicgen_lora.plan.table --presets  # writes example_configs/musicgen_*_lora_*gb.json

Each cell: the settings recommended for that model on a GPU of that size (:func:`~.fit.recommend`), and the largest
batch x seconds that fits with them. A cell is *measured* when bench/memory_measurements.json holds a GPU measurement
of that model with those settings, else *predicted*."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from .fit import GPU_SIZES_GB, Recommendation, recommend

ROOT = Path(__file__).resolve().parents[2]
MEASUREMENTS = ROOT / "bench" / "memory_measurements.json"
TABLE_MODELS = ("small", "medium", "large", "melody", "melody-large")
START, END = "<!-- which-gpu table: python -m musicgen_lora.plan.table -->", "<!-- end of the which-gpu table -->"

# The rest of a preset: the options of example_configs/musicgen_small_lora_my_songs.json that memory does not change.
CLIPS_PER_STEP = 4  # the README's recipe: 2 x 2 clips (2 min of audio) an optimizer step
PRESET_BASE: dict[str, Any] = {
    "dataset_name": "./my_songs", "instance_prompt": None, "min_duration_in_seconds": 5, "lora_r": 16,
    "lora_alpha": 32, "lora_dropout": 0.05, "learning_rate": 2e-4, "lr_scheduler_type": "cosine",
    "warmup_steps": 0.05, "num_train_epochs": 4, "chunk_long_tracks": True, "logging_steps": 10, "save_steps": 50,
    "save_total_limit": 3,
    "seed": 42, "report_to": "none", "sample_duration_in_seconds": 10,
    "sample_prompts": ["a calm lofi hip hop beat with warm piano", "an energetic rock song with distorted guitars"],
}  # fmt: skip


def hub_id(model: str) -> str:
    return f"facebook/musicgen-{model}"


def measured_on_gpu(model: str, options: dict[str, Any]) -> bool:
    """Whether a GPU measurement of ``model`` with these options is kept in the repository."""
    if not MEASUREMENTS.is_file():
        return False
    records = json.loads(MEASUREMENTS.read_text(encoding="utf-8")).get("cases", [])
    for record in records:
        config = record.get("config", {})
        if record.get("device") != "cuda" or config.get("model_name_or_path") != hub_id(model):
            continue
        if (
            str(config.get("quantize_base")) == str(options.get("quantize_base"))
            and str(config.get("gradient_checkpointing")).lower() == str(options.get("gradient_checkpointing")).lower()
        ):
            return True
    return False


def cell(rec: Recommendation) -> str:
    best = rec.best()
    if rec.name is None or best is None:
        return "does not fit"
    mark = "measured" if measured_on_gpu(rec.model.split("-", 1)[1], rec.options) else "predicted"
    return f"{rec.name}: {best.batch} x {best.seconds} s ({mark})"


def recommendations() -> dict[str, list[Recommendation]]:
    return {model: [recommend(hub_id(model), gb) for gb in GPU_SIZES_GB] for model in TABLE_MODELS}


def markdown_table(recs: dict[str, list[Recommendation]] | None = None) -> str:
    recs = recs or recommendations()
    header = "| model | " + " | ".join(f"{gb} GB" for gb in GPU_SIZES_GB) + " |"
    lines = [START, header, "|---" * (len(GPU_SIZES_GB) + 1) + "|"]
    for model, row in recs.items():
        lines.append(f"| musicgen-{model} | " + " | ".join(cell(rec) for rec in row) + " |")
    lines.append(END)
    return "\n".join(lines)


def presets(recs: dict[str, list[Recommendation]] | None = None) -> dict[str, dict[str, Any]]:
    """One preset per model: the smallest GPU on which batch 1 x 30 s fits, with the recommended settings, the
    largest batch that fits 30 s windows there up to the README's recipe's 4 clips per optimizer step, and
    accumulation to those 4 clips (the recipe's other settings: songs chunked into 30 s windows, 4 epochs, lr 2e-4)."""
    recs = recs or recommendations()
    result = {}
    for model, row in recs.items():
        rec = next((r for r in row if r.fits and r.fits[0].seconds >= 30), None)
        if rec is None:
            continue
        batch = min(CLIPS_PER_STEP, max(f.batch for f in rec.fits if f.seconds >= 30))
        name = f"musicgen_{model.replace('-', '_')}_lora_{rec.gpu_gb}gb.json"
        result[name] = {
            "model_name_or_path": hub_id(model), **PRESET_BASE,
            "output_dir": f"outputs/musicgen-{model}-{rec.gpu_gb}gb", "max_duration_in_seconds": 30,
            "per_device_train_batch_size": batch, "gradient_accumulation_steps": max(1, CLIPS_PER_STEP // batch),
            **rec.options,
        }  # fmt: skip
    return result


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(prog="python -m musicgen_lora.plan.table", description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", action="store_true", help="write the presets into example_configs/")
    args = parser.parse_args(argv)
    recs = recommendations()
    if args.presets:
        for name, values in presets(recs).items():
            (ROOT / "example_configs" / name).write_text(json.dumps(values, indent=2) + "\n", encoding="utf-8")
    table = markdown_table(recs)
    print(table)
    return table


if __name__ == "__main__":
    main()
