"""Generate music with a base MusicGen and LoRA adapters: any length, several prompts, melody, merge and blend.

    python -m musicgen_lora.generate --base_model facebook/musicgen-small --adapter OUTPUT_DIR_OR_HUB_ID \\
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

Without ``--base_model`` the base recorded in the (first) adapter's ``adapter_config.json`` is used.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import UserError, exit_on_user_error, one_line

logger = logging.getLogger(__name__)

MAX_WINDOW_SECONDS = 30.0  # MusicGen was trained on 30 s windows
FORMATS = ("wav", "mp3", "both")


# ------------------------------------------------------------------------------------------------ loading


def adapter_base(adapter: str) -> str | None:
    """The base model an adapter was trained on (``adapter_config.json``), or None if it cannot be read."""
    try:
        from peft import PeftConfig

        return PeftConfig.from_pretrained(adapter).base_model_name_or_path
    except Exception:  # noqa: BLE001 - any failure just means "not recorded"
        return None


def load_for_generation(
    base_model: str | None,
    adapters: list[str],
    weights: list[float] | None = None,
    blend: str = "cat",
    device: str | None = None,
) -> tuple[torch.nn.Module, Any, str]:
    """Load the base model and processor, and put the adapters on it (one, or a weighted blend of several).

    Args:
        base_model: Hub id or folder of the base; None: the one recorded in the first adapter.
        adapters: adapter folders or Hub ids (may be empty: the base alone).
        weights: one weight per adapter when blending (default: equal weights summing to 1).
        blend: PEFT ``add_weighted_adapter`` combination type (``cat``, ``linear``, ``svd``, ...).
        device: torch device (default: CUDA if available, else CPU).

    Returns:
        ``(model, processor, base_model)``; the model is a ``PeftModel`` when there are adapters.

    Raises:
        UserError: the base or an adapter cannot be loaded, or the weights do not match the adapters.
    """
    from transformers import AutoModelForTextToWaveform

    from .processors import load_processor

    if base_model is None:
        base_model = adapter_base(adapters[0]) if adapters else None
        if base_model is None:
            raise UserError("--base_model is not set and no adapter records its base; pass --base_model (e.g. facebook/musicgen-small)")
    try:
        model = AutoModelForTextToWaveform.from_pretrained(base_model)
        processor = load_processor(base_model)
    except ImportError as err:
        raise UserError(
            f"cannot load the processor of '{base_model}': {one_line(err)[:200]}; install torchaudio, or download the "
            "model to a local folder (hf download ... --local-dir DIR) and pass that folder"
        ) from None
    except (OSError, ValueError, KeyError) as err:
        raise UserError(f"cannot load base model '{base_model}': {one_line(err)[:300]}; give a MusicGen Hub id or folder") from None
    if getattr(model.config, "model_type", None) not in ("musicgen", "musicgen_melody"):
        raise UserError(f"'{base_model}' is not a MusicGen model; pass a MusicGen base (e.g. facebook/musicgen-small)")
    if weights is not None and len(weights) != len(adapters):
        raise UserError(f"--adapter_weights has {len(weights)} value(s) for {len(adapters)} adapter(s); give one per adapter")
    if adapters:
        model = _apply_adapters(model, adapters, weights, blend)
    model.eval()
    model.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    return model, processor, base_model


def _apply_adapters(model: torch.nn.Module, adapters: list[str], weights: list[float] | None, blend: str) -> torch.nn.Module:
    from peft import PeftModel

    names = [f"adapter_{i}" for i in range(len(adapters))]
    try:
        peft_model = PeftModel.from_pretrained(model, adapters[0], adapter_name=names[0])
        for name, adapter in zip(names[1:], adapters[1:]):
            peft_model.load_adapter(adapter, adapter_name=name)
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        raise UserError(f"cannot load adapter: {one_line(err)[:300]}; give an adapter folder (with adapter_config.json) or Hub id trained on this base") from None
    if len(adapters) == 1 and weights is None:
        return peft_model
    weights = weights if weights is not None else [1.0 / len(adapters)] * len(adapters)
    try:
        peft_model.add_weighted_adapter(names, weights, adapter_name="blend", combination_type=blend)
    except (ValueError, TypeError) as err:
        raise UserError(f"cannot blend the adapters with --blend {blend}: {one_line(err)[:300]}; try --blend cat (any ranks)") from None
    peft_model.set_adapter("blend")
    for name in names:  # the blend holds what is needed; the merged export must contain only it
        peft_model.delete_adapter(name)
    logger.info("Blended %s with weights %s (%s)", ", ".join(adapters), weights, blend)
    return peft_model


def merge_and_save(model: torch.nn.Module, processor: Any, out_dir: str | Path, base_model: str) -> tuple[torch.nn.Module, Path]:
    """Fold the LoRA weights into the base (``merge_and_unload``) and save a standalone model + processor + card.

    Returns:
        ``(merged model, folder)``; the folder loads with ``AutoModelForTextToWaveform.from_pretrained`` and
        ``pipeline("text-to-audio")``.
    """
    from huggingface_hub import ModelCard, ModelCardData
    from peft import PeftModel

    from .hub import hub_id_of

    if not isinstance(model, PeftModel):
        raise UserError("--merge needs at least one --adapter to merge into the base model")
    merged = model.merge_and_unload()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out)
    processor.save_pretrained(out)
    base_id = hub_id_of(base_model)
    data = ModelCardData(
        base_model=base_id, base_model_relation="merge" if base_id else None, library_name="transformers",
        pipeline_tag="text-to-audio", tags=["musicgen", "lora", "merged", "text-to-audio", "music"],
    )  # fmt: skip
    ModelCard(
        f"---\n{data.to_yaml()}\n---\n\n# Merged MusicGen\n\n{'[' + base_id + '](https://huggingface.co/' + base_id + ')' if base_id else 'A MusicGen model'} "
        "with LoRA weights merged in: loads without PEFT.\n\n```python\nfrom transformers import pipeline\n\n"
        f'music = pipeline("text-to-audio", model="{out.name}")\nout = music("lofi hip hop, piano", forward_params={{"do_sample": True}})\n```\n'
    ).save(out / "README.md")
    logger.info("Wrote the merged model to %s", out)
    return merged, out


# ------------------------------------------------------------------------------------------------ generation


def _encode_prompt(audio_encoder: torch.nn.Module, audio: np.ndarray) -> torch.Tensor:
    """EnCodec codes of (bsz, channels, samples) audio as decoder input ids: (bsz * num_codebooks, frames).

    As in training (``data.encode_clip``): each channel is encoded by the mono codec, and a stereo item's codebooks are
    interleaved L0, R0, L1, R1, ... as stereo MusicGen expects.
    """
    device = next(audio_encoder.parameters()).device
    codes = []
    for item in audio:  # (channels, samples) -> (chunks=1, channels, K_per_channel, frames)
        item_codes = audio_encoder.encode(torch.from_numpy(np.ascontiguousarray(item)).to(device)[:, None]).audio_codes[0]
        codes.append(item_codes.transpose(0, 1).reshape(-1, item_codes.shape[-1]))  # (K_per_channel * channels, frames)
    return torch.cat(codes, dim=0).long()


@torch.no_grad()
def generate_long(
    model: torch.nn.Module,
    processor: Any,
    prompts: list[str],
    seconds: float,
    guidance_scale: float = 3.0,
    seed: int = 0,
    window_seconds: float = MAX_WINDOW_SECONDS,
    overlap_seconds: float = 10.0,
    melody: np.ndarray | None = None,
    do_sample: bool = True,
) -> np.ndarray:
    """One clip per prompt, of ``seconds`` (any length), by windowed continuation beyond ``window_seconds``.

    ::

        window 1: text                          -> [==========]            (window_seconds)
        window 2: text + last overlap of audio  ->        [ov|=======]     (adds window - overlap)
        window 3: ...                           ->                [ov|===] (only what is still missing)

    Args:
        model: MusicGen (any variant) or a ``PeftModel`` around it.
        processor: its processor.
        prompts: text prompts, generated together as one batch.
        seconds: length of each clip.
        guidance_scale: classifier-free guidance (1 disables it).
        seed: seeds the sampler once, before the first window.
        window_seconds: longest span generated at once (at most MusicGen's 30 s).
        overlap_seconds: audio that conditions each next window; must be shorter than the window.
        melody: melody models: mono audio at the feature extractor's rate; window k gets the chroma of the same time
            span (the melody repeats if shorter).
        do_sample: sampling (True) or greedy decoding.

    Returns:
        float32 audio (len(prompts), channels, round(seconds * sampling_rate)).
    """
    config = model.config
    rate = config.audio_encoder.sampling_rate
    frame_rate = config.audio_encoder.frame_rate
    hop = rate // frame_rate  # samples per codec frame (640 at 32 kHz / 50 Hz)
    num_delays = config.decoder.num_codebooks // config.decoder.audio_channels
    total_samples = round(seconds * rate)
    total_frames = math.ceil(total_samples / hop)
    window = round(window_seconds * frame_rate)
    overlap = round(overlap_seconds * frame_rate)
    if not 0 < window <= round(MAX_WINDOW_SECONDS * frame_rate):
        raise UserError(f"--window must be in (0, {MAX_WINDOW_SECONDS:g}] seconds (MusicGen's window), got {window_seconds}")
    if total_frames > window and not 0 < overlap < window:
        raise UserError(f"--overlap must be between one frame and the window ({window_seconds:g} s), got {overlap_seconds}")
    if melody is not None:
        melody_rate = processor.feature_extractor.sampling_rate
        melody = np.resize(melody, max(len(melody), math.ceil(seconds * melody_rate) + 1))  # repeat if shorter

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    torch.manual_seed(seed)
    pieces: list[np.ndarray] = []
    produced = 0  # frames generated so far
    try:
        while produced < total_frames:
            prompt_frames = min(overlap, produced)  # 0 for the first window
            new_frames = min(window - prompt_frames, total_frames - produced)
            if melody is None:
                inputs = processor(text=prompts, padding=True, return_tensors="pt")
            else:
                start = (produced - prompt_frames) * hop * melody_rate // rate
                segment = melody[start : start + (prompt_frames + new_frames) * hop * melody_rate // rate]
                inputs = processor(
                    text=prompts, audio=[segment] * len(prompts), sampling_rate=melody_rate, padding=True,
                    return_tensors="pt",
                )  # fmt: skip
            kwargs = {k: v.to(device) for k, v in inputs.items()}
            if prompt_frames:
                audio_so_far = np.concatenate(pieces, axis=-1)
                prompt_audio = audio_so_far[..., (produced - prompt_frames) * hop : produced * hop]
                kwargs["decoder_input_ids"] = _encode_prompt(model.audio_encoder, prompt_audio).to(device)
            audio = model.generate(
                **kwargs, do_sample=do_sample, guidance_scale=guidance_scale, max_new_tokens=new_frames + num_delays - 1
            )  # (bsz, channels, (prompt_frames + new_frames) * hop): the prompt is decoded again in front
            audio = audio.float().cpu().numpy()[..., prompt_frames * hop :]
            if audio.shape[-1] != new_frames * hop:
                raise RuntimeError(f"generate() returned {audio.shape[-1]} new samples, expected {new_frames * hop}")
            pieces.append(audio)
            produced += new_frames
    finally:
        model.train(was_training)
    return np.concatenate(pieces, axis=-1)[..., :total_samples]


def write_audio(path: Path, audio: np.ndarray, rate: int, fmt: str) -> list[Path]:
    """Write (channels, samples) audio as 16-bit WAV and/or MP3 (``fmt``: wav, mp3 or both); returns the paths."""
    import soundfile as sf

    from .audio import write_wav

    written = []
    if fmt in ("wav", "both"):
        write_wav(path.with_suffix(".wav"), audio, rate)
        written.append(path.with_suffix(".wav"))
    if fmt in ("mp3", "both"):
        sf.write(str(path.with_suffix(".mp3")), np.clip(audio.T, -1.0, 1.0), rate, format="MP3")
        written.append(path.with_suffix(".mp3"))
    return written


# ------------------------------------------------------------------------------------------------ command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m musicgen_lora.generate",
        description="Generate music with a MusicGen base and LoRA adapters (any length, batched prompts, melody), "
        "or merge / blend adapters into a standalone model.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--base_model", default=None, help="base MusicGen (Hub id or folder); default: the adapter's base")
    parser.add_argument("--adapter", action="append", default=[], help="LoRA adapter folder or Hub id; repeat to blend")
    parser.add_argument("--adapter_weights", type=float, nargs="+", default=None, help="blend weights, one per --adapter")
    parser.add_argument("--blend", default="cat", help="PEFT add_weighted_adapter combination_type (cat: exact, any ranks; linear: same ranks; svd)")
    parser.add_argument("--prompt", action="append", default=[], help="text prompt; repeat for several clips")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of audio per prompt (any length)")
    parser.add_argument("--guidance_scale", type=float, default=3.0, help="classifier-free guidance (1: none)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed: same seed, prompts and batch -> same audio")
    parser.add_argument("--greedy", action="store_true", help="greedy decoding instead of sampling")
    parser.add_argument("--out_dir", default="generated", help="where the audio files and prompts.txt go")
    parser.add_argument("--format", choices=FORMATS, default="wav", help="audio file format")
    parser.add_argument("--window", type=float, default=MAX_WINDOW_SECONDS, help="seconds generated at once (at most 30)")
    parser.add_argument("--overlap", type=float, default=10.0, help="seconds of audio that condition each next window")
    parser.add_argument("--melody", default=None, help="melody models: audio file whose chroma conditions the music")
    parser.add_argument("--batch_size", type=int, default=None, help="prompts generated together (default: all)")
    parser.add_argument("--merge", default=None, metavar="DIR", help="write the base with the adapter(s) merged in to DIR")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--debug", action="store_true", help="full tracebacks instead of one-line errors")
    return parser


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Returns ``{"files": [paths], "merged": folder or None, "sampling_rate": rate}``."""
    from .logs import setup_logging

    argv = sys.argv[1:] if argv is None else list(argv)
    options = build_parser().parse_args(argv)
    setup_logging()
    with exit_on_user_error(argv):
        if not options.prompt and not options.merge:
            raise UserError("nothing to do; give --prompt TEXT (repeatable) to generate, and/or --merge DIR to export")
        if options.duration <= 0:
            raise UserError(f"--duration must be > 0 seconds, got {options.duration}")
        if options.guidance_scale < 1:
            raise UserError(f"--guidance_scale must be >= 1 (1 disables guidance), got {options.guidance_scale}")
        if options.batch_size is not None and options.batch_size < 1:
            raise UserError(f"--batch_size must be >= 1, got {options.batch_size}")
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
        return {"files": files, "merged": str(merged_dir) if merged_dir else None,
                "sampling_rate": model.config.audio_encoder.sampling_rate}  # fmt: skip


def _read_melody(path: str | None, model: torch.nn.Module, processor: Any) -> np.ndarray | None:
    from .audio import load_audio
    from .modeling import is_melody_model

    if path is None:
        return None
    if not is_melody_model(model):
        raise UserError("--melody needs a melody model (e.g. facebook/musicgen-melody); remove --melody or change --base_model")
    return load_audio(path, processor.feature_extractor.sampling_rate, channels=1)[0]


def _generate_files(model: torch.nn.Module, processor: Any, options: argparse.Namespace, melody: np.ndarray | None) -> list[str]:
    out = Path(options.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rate = model.config.audio_encoder.sampling_rate
    batch = options.batch_size or len(options.prompt)
    files: list[str] = []
    for first in range(0, len(options.prompt), batch):
        prompts = options.prompt[first : first + batch]
        audio = generate_long(
            model, processor, prompts, options.duration, guidance_scale=options.guidance_scale, seed=options.seed,
            window_seconds=options.window, overlap_seconds=options.overlap, melody=melody, do_sample=not options.greedy,
        )  # fmt: skip
        for offset, clip in enumerate(audio):
            files += [str(p) for p in write_audio(out / str(first + offset), clip, rate, options.format)]
    (out / "prompts.txt").write_text("".join(f"{i}\t{p}\n" for i, p in enumerate(options.prompt)), encoding="utf-8")
    settings = {k: v for k, v in vars(options).items() if k != "debug"}
    (out / "generation_config.json").write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
    for path in files:
        print(path)
    return files


if __name__ == "__main__":
    main()
