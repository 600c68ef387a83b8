"""Generate music with a base MusicGen and LoRA adapters: any length, several prompts, melody, merge and blend.

    python -m musicgen_lora.generate --base_model facebook/musicgen-small --adapter OUTPUT_DIR_OR_HUB_ID \
        --prompt "lofi hip hop, piano" --prompt "jazz trio" --duration 45 --guidance_scale 3 --seed 0 --out_dir out/

writes ``out/0.wav``, ``out/1.wav`` (``--format mp3`` or ``both`` for MP3, written by libsndfile: no FFmpeg) and
``out/prompts.txt``. Other uses:

- **Longer than the 30 s window**: windowed continuation, as audiocraft does. The first window is generated from the
  text; each next one is prompted with the last ``--overlap`` seconds of the audio so far (encoded by the model's
  EnCodec and passed to ``generate()`` as decoder input ids, so the model continues it) and adds
  ``window - overlap`` seconds. The result is the requested length to the sample, with no gap at the seams.
- **Melody** models: ``--melody FILE`` conditions every prompt on the chroma of FILE, aligned with each window's time
  span (a shorter melody repeats).
- **Merge**: ``--merge DIR`` writes a standalone model (``merge_and_unload``) that ``AutoModelForTextToWaveform`` and
  ``pipeline("text-to-audio")`` load without PEFT; it makes the same audio as the adapter for the same seed.
- **Blend**: ``--adapter A --adapter B --adapter_weights 0.7 0.3`` mixes two (or more) style adapters with PEFT's
  ``add_weighted_adapter`` (``--blend cat``, the default, is exact for any ranks: the blend's weight update is
  ``0.7 * dW_A + 0.3 * dW_B``).

Without ``--base_model`` the base recorded in the (first) adapter's ``adapter_config.json`` is used."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..audio.io import load_audio, write_audio
from ..errors import CommandLineParser, UserError, exit_on_user_error, finite_number, seed_number
from ..files import atomic_write_json, atomic_write_text, ensure_writable_folder, kept_aside
from ..logs import setup_logging
from ..models.loading import is_melody_model, pick_device
from .adapters import load_for_generation, merge_and_save
from .long_form import MAX_WINDOW_SECONDS, generate_long

FORMATS = ("wav", "mp3", "both")
MIN_SECONDS = 0.02  # one codec frame at 50 Hz
MAX_SECONDS = 3600.0  # an hour: longer is surely a typo (it would take days on a CPU)


def build_parser() -> argparse.ArgumentParser:
    parser = CommandLineParser(
        prog="python -m musicgen_lora.generate",
        description="Generate music with a MusicGen base and LoRA adapters (any length, batched prompts, melody), "
        "or merge / blend adapters into a standalone model.",
    )
    parser.add_argument(
        "--base_model", default=None, help="base MusicGen (Hub id or folder); default: the adapter's base"
    )
    parser.add_argument("--adapter", action="append", default=[], help="LoRA adapter folder or Hub id; repeat to blend")
    parser.add_argument(
        "--adapter_weights", type=finite_number, nargs="+", default=None, help="blend weights, one per --adapter"
    )
    parser.add_argument(
        "--blend",
        default="cat",
        help="PEFT add_weighted_adapter combination_type (cat: exact, any ranks; linear: same ranks; svd)",
    )
    parser.add_argument("--prompt", action="append", default=[], help="text prompt; repeat for several clips")
    parser.add_argument("--duration", type=finite_number, default=10.0, help="seconds of audio per prompt (any length)")
    parser.add_argument("--guidance_scale", type=finite_number, default=3.0, help="classifier-free guidance (1: none)")
    parser.add_argument(
        "--seed", type=seed_number, default=0, help="sampling seed: same seed, prompts and batch -> same audio"
    )
    parser.add_argument("--greedy", action="store_true", help="greedy decoding instead of sampling")
    parser.add_argument("--out_dir", default="generated", help="where the audio files and prompts.txt go")
    parser.add_argument("--format", choices=FORMATS, default="wav", help="audio file format")
    parser.add_argument("--overwrite", action="store_true", help="replace earlier generations in --out_dir")
    parser.add_argument(
        "--window", type=finite_number, default=MAX_WINDOW_SECONDS, help="seconds generated at once (at most 30)"
    )
    parser.add_argument(
        "--overlap", type=finite_number, default=10.0, help="seconds of audio that condition each next window"
    )
    parser.add_argument("--melody", default=None, help="melody models: audio file whose chroma conditions the music")
    parser.add_argument("--batch_size", type=int, default=None, help="prompts generated together (default: all)")
    parser.add_argument(
        "--merge", default=None, metavar="DIR", help="write the base with the adapter(s) merged in to DIR"
    )
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--debug", action="store_true", help="full tracebacks instead of one-line errors")
    return parser


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Returns ``{"files": [paths], "merged": folder or None, "sampling_rate": rate}``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    setup_logging()
    with exit_on_user_error(argv):
        options = build_parser().parse_args(argv)
        _check_options(options)
        model, processor, base_model = load_for_generation(
            options.base_model, options.adapter, options.adapter_weights, options.blend, options.device
        )
        melody = _read_melody(options.melody, model, processor)
        merged_dir = None
        if options.merge:
            model, merged_dir = merge_and_save(model, processor, options.merge, base_model)
        files: list[str] = []
        if options.prompt:
            files = _generate_files(model, processor, options, melody)
        return {
            "files": files,
            "merged": str(merged_dir) if merged_dir else None,
            "sampling_rate": model.config.audio_encoder.sampling_rate,
        }


def _check_options(options: argparse.Namespace) -> None:
    """Every option checked before the model loads, and the output folders before anything is written.

    Raises:
        UserError: nothing to do, a number out of range, no such device, or an output folder that holds something
            this command would replace.
    """
    if not options.prompt and not options.merge:
        raise UserError("nothing to do; give --prompt TEXT (repeatable) to generate, and/or --merge DIR to export")
    if not MIN_SECONDS <= options.duration <= MAX_SECONDS:
        raise UserError(
            f"--duration must be between {MIN_SECONDS:g} s (one codec frame) and {MAX_SECONDS:g} s, got "
            f"{options.duration:g}"
        )
    if options.guidance_scale < 1:
        raise UserError(f"--guidance_scale must be >= 1 (1 disables guidance), got {options.guidance_scale}")
    if options.batch_size is not None and options.batch_size < 1:
        raise UserError(f"--batch_size must be >= 1, got {options.batch_size}")
    if any(not prompt.strip() for prompt in options.prompt):
        raise UserError("--prompt is empty; give each --prompt some text")
    pick_device(options.device)
    if options.prompt:
        _check_out_dir(Path(options.out_dir), options.overwrite)
    if options.merge:
        merge = Path(options.merge)
        if merge.exists() and not merge.is_dir():
            raise UserError(f"--merge '{merge}' is a file; give a new or empty folder for the merged model")
        if merge.exists() and any(merge.iterdir()):
            raise UserError(
                f"--merge folder '{merge}' is not empty (the merged model would replace what is there); give a new or "
                "empty folder"
            )


def _check_out_dir(out: Path, overwrite: bool) -> None:
    """Raises UserError when --out_dir is a file, not writable, or holds earlier generations (without --overwrite,
    which lets this generation replace them once it has succeeded)."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out_dir '{out}' is a file, not a folder; choose a folder")
    earlier = _generation_files(out)
    if earlier and not overwrite:
        raise UserError(
            f"--out_dir '{out}' holds earlier generations ({', '.join(p.name for p in earlier[:3])}); choose another "
            "--out_dir, or add --overwrite to replace them"
        )
    ensure_writable_folder(out, "--out_dir")


def _generation_files(out: Path) -> list[Path]:
    """The files an earlier generation wrote into ``out`` (numbered clips, prompts.txt, generation_config.json)."""
    if not out.is_dir():
        return []
    return sorted(
        p
        for p in out.iterdir()
        if p.name in ("prompts.txt", "generation_config.json") or (p.suffix in (".wav", ".mp3") and p.stem.isdigit())
    )


def _read_melody(path: str | None, model: torch.nn.Module, processor: Any) -> np.ndarray | None:

    if path is None:
        return None
    if not is_melody_model(model):
        raise UserError(
            "--melody needs a melody model (e.g. facebook/musicgen-melody); remove --melody or change --base_model"
        )
    return load_audio(path, processor.feature_extractor.sampling_rate, channels=1)[0]


def _generate_files(
    model: torch.nn.Module, processor: Any, options: argparse.Namespace, melody: np.ndarray | None
) -> list[str]:
    out = Path(options.out_dir)  # checked by _check_options
    # an earlier generation (only with --overwrite: see _check_out_dir) is deleted once this one has succeeded
    with kept_aside(out, _generation_files(out), "generation", lambda: _generation_files(out)):
        files = _write_generations(model, processor, options, melody, out)
    for path in files:
        print(path)
    return files


def _write_generations(
    model: torch.nn.Module, processor: Any, options: argparse.Namespace, melody: np.ndarray | None, out: Path
) -> list[str]:
    """Generate every prompt (in batches) and write the clips, prompts.txt and generation_config.json to ``out``."""
    rate = model.config.audio_encoder.sampling_rate
    batch = options.batch_size or len(options.prompt)
    files: list[str] = []
    for first in range(0, len(options.prompt), batch):
        prompts = options.prompt[first : first + batch]
        audio = generate_long(
            model,
            processor,
            prompts,
            options.duration,
            guidance_scale=options.guidance_scale,
            seed=options.seed,
            window_seconds=options.window,
            overlap_seconds=options.overlap,
            melody=melody,
            do_sample=not options.greedy,
        )
        for offset, clip in enumerate(audio):
            files += [str(p) for p in write_audio(out / str(first + offset), clip, rate, options.format)]
    atomic_write_text(out / "prompts.txt", "".join(f"{i}\t{p}\n" for i, p in enumerate(options.prompt)))
    settings = {k: v for k, v in vars(options).items() if k != "debug"}
    atomic_write_json(out / "generation_config.json", settings, indent=2)
    return files
