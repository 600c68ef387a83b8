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

import contextlib
import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from ..audio.io import load_audio, write_audio
from ..config.commands import CommandParser
from ..errors import FiniteNumber, SeedNumber, UserError, exit_on_user_error
from ..files import atomic_write_json, atomic_write_text, kept_aside
from ..logs import progress_bars, setup_logging
from ..models.loading import is_melody_model, pick_device
from .adapters import load_for_generation, merge_and_save
from .long_form import MAX_WINDOW_SECONDS, generate_long
from .out_dir import check_out_dir, generation_files, out_dir_lock

MIN_SECONDS = 0.02  # one codec frame at 50 Hz
MAX_SECONDS = 3600.0  # an hour: longer is surely a typo (it would take days on a CPU)


@dataclass
class GenerateArguments:
    """The options of ``python -m musicgen_lora.generate`` (also ``musicgen-lora generate``)."""

    base_model: str | None = field(
        default=None, metadata={"help": "base MusicGen (Hub id or folder); default: the adapter's base"}
    )
    adapter: list[str] = field(
        default_factory=list, metadata={"repeat": True, "help": "LoRA adapter folder or Hub id; repeat to blend"}
    )
    adapter_weights: list[FiniteNumber] | None = field(
        default=None, metadata={"help": "blend weights, one per --adapter"}
    )
    blend: str = field(
        default="cat",
        metadata={
            "help": "PEFT add_weighted_adapter combination_type (cat: exact, any ranks; linear: same ranks; svd)"
        },
    )
    prompt: list[str] = field(
        default_factory=list, metadata={"repeat": True, "help": "text prompt; repeat for several clips"}
    )
    duration: FiniteNumber = field(default=10.0, metadata={"help": "seconds of audio per prompt (any length)"})
    guidance_scale: FiniteNumber = field(default=3.0, metadata={"help": "classifier-free guidance (1: none)"})
    seed: SeedNumber = field(default=0, metadata={"help": "sampling seed: same seed, prompts and batch -> same audio"})
    greedy: bool = field(default=False, metadata={"help": "greedy decoding instead of sampling"})
    out_dir: str = field(default="generated", metadata={"help": "where the audio files and prompts.txt go"})
    format: Literal["wav", "mp3", "both"] = field(default="wav", metadata={"help": "audio file format"})
    overwrite: bool = field(default=False, metadata={"help": "replace earlier generations in --out_dir"})
    window: FiniteNumber = field(
        default=MAX_WINDOW_SECONDS, metadata={"help": "seconds generated at once (at most 30)"}
    )
    overlap: FiniteNumber = field(default=10.0, metadata={"help": "seconds of audio that condition each next window"})
    melody: str | None = field(
        default=None, metadata={"help": "melody models: audio file whose chroma conditions the music"}
    )
    batch_size: int | None = field(default=None, metadata={"help": "prompts generated together (default: all)"})
    merge: str | None = field(
        default=None, metadata={"metavar": "DIR", "help": "write the base with the adapter(s) merged in to DIR"}
    )
    device: str | None = field(default=None, metadata={"help": "torch device (default: cuda if available, else cpu)"})
    debug: bool = field(default=False, metadata={"help": "full tracebacks instead of one-line errors"})


def build_parser() -> CommandParser:
    return CommandParser(
        GenerateArguments,
        prog="python -m musicgen_lora.generate",
        description="Generate music with a MusicGen base and LoRA adapters (any length, batched prompts, melody), "
        "or merge / blend adapters into a standalone model.",
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Returns ``{"files": [paths], "merged": folder or None, "sampling_rate": rate}``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    setup_logging()
    # progress bars (loading the weights, long generations) only where a person watches: not into a log file
    with exit_on_user_error(argv), contextlib.ExitStack() as held, progress_bars(sys.stderr.isatty()):
        options = build_parser().parse(argv)
        _check_options(options)
        if options.prompt:  # one generation per folder at a time; checked again once held
            held.enter_context(out_dir_lock(Path(options.out_dir)))
            check_out_dir(Path(options.out_dir), options.overwrite)
        model, processor, base_model = load_for_generation(
            options.base_model, options.adapter, options.adapter_weights, options.blend, options.device
        )
        melody = _read_melody(options.melody, model, processor)
        merged_dir = None
        if options.merge:
            model, merged_dir = merge_and_save(model, processor, options.merge, base_model)
        files: list[str] = []
        if options.prompt:
            files = _generate_files(model, processor, options, melody, base_model)
        return {
            "files": files,
            "merged": str(merged_dir) if merged_dir else None,
            "sampling_rate": model.config.audio_encoder.sampling_rate,
        }


def _check_options(options: GenerateArguments) -> None:
    """Every option checked before the model loads, and the output folders before anything is written.

    Raises:
        UserError: nothing to do, a number out of range, a prompt on several lines, no such device, or an output
            folder that holds something this command would replace or that is training data.
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
    broken = next((i for i, prompt in enumerate(options.prompt, 1) if "\n" in prompt or "\r" in prompt), None)
    if broken is not None:  # prompts.txt lists one prompt per line
        raise UserError(f"--prompt number {broken} holds a line break; write each prompt on one line")
    pick_device(options.device)
    if options.prompt:
        check_out_dir(Path(options.out_dir), options.overwrite)
    if options.merge:
        merge = Path(options.merge)
        if merge.exists() and not merge.is_dir():
            raise UserError(f"--merge '{merge}' is a file; give a new or empty folder for the merged model")
        if merge.exists() and any(merge.iterdir()):
            raise UserError(
                f"--merge folder '{merge}' is not empty (the merged model would replace what is there); give a new or "
                "empty folder"
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
    model: torch.nn.Module, processor: Any, options: GenerateArguments, melody: np.ndarray | None, base_model: str
) -> list[str]:
    out = Path(options.out_dir)  # checked by _check_options
    # an earlier generation (only with --overwrite: see check_out_dir) is deleted once this one has succeeded
    with kept_aside(out, generation_files(out), "generation", lambda: generation_files(out)):
        files = _write_generations(model, processor, options, melody, out, base_model)
    for path in files:
        print(path)
    return files


def _write_generations(
    model: torch.nn.Module,
    processor: Any,
    options: GenerateArguments,
    melody: np.ndarray | None,
    out: Path,
    base_model: str,
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
    settings = {k: v for k, v in dataclasses.asdict(options).items() if k != "debug"}
    settings["base_model"] = base_model  # the one used, also when it came from the adapter
    atomic_write_json(out / "generation_config.json", settings, indent=2)
    return files
