"""Build a tiny, randomly initialised but fully working MusicGen model folder locally.

The folder mirrors the layout of ``facebook/musicgen-small`` (32 kHz mono EnCodec with 4 codebooks at a
50 Hz frame rate, a T5 text encoder, a MusicGen decoder, a T5 tokenizer and an EnCodec feature extractor)
but every component is shrunk to a few hundred thousand parameters, so that tests and smoke runs work on
a small CPU without any access to the Hugging Face Hub::

    python -m musicgen_lora.tiny OUT_DIR [--variant mono|stereo|melody] [--seed 0] [--force]

    from transformers import AutoModelForTextToWaveform, AutoProcessor
    model = AutoModelForTextToWaveform.from_pretrained(OUT_DIR)   # MusicgenForConditionalGeneration
    processor = AutoProcessor.from_pretrained(OUT_DIR)            # MusicgenProcessor

``--variant stereo`` mirrors ``facebook/musicgen-stereo-small`` (same classes, decoder with 2 audio channels
and 8 interleaved codebooks over the same mono EnCodec) and ``--variant melody`` mirrors
``facebook/musicgen-melody`` (``MusicgenMelodyForConditionalGeneration`` + ``MusicgenMelodyProcessor``, text
and 12-bin chroma conditioning). The melody processor needs torchaudio in transformers; without it use
:func:`musicgen_lora.models.processors.load_processor`, which builds the same processor with a pure-torch STFT.

Nothing is downloaded: the tokenizer is trained here (:mod:`.tiny_tokenizer`) and the weights are random (seeded,
hence reproducible), with the codec's codebooks fitted to synthetic audio (:mod:`.tiny_codec`); the sizes and
configs are :mod:`.tiny_configs`'. This module builds the model and processor, saves the folder atomically, and is
the command line."""

from __future__ import annotations

import json
import os
import pathlib
import shutil

import torch
from transformers import (
    EncodecFeatureExtractor,
    MusicgenProcessor,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    ProcessorMixin,
)

from ..compat import MusicgenMelodyProcessor
from ..errors import CommandLineParser, UserError, exit_on_user_error
from ..files import ensure_writable_folder
from ..models.processors import melody_feature_extractor
from .tiny_codec import init_codebooks
from .tiny_configs import MIRRORS, VARIANTS, architecture_sizes, check_variant, generation_config, musicgen_config
from .tiny_tokenizer import build_tiny_tokenizer


def build_tiny_musicgen(
    seed: int = 0,
    codebook_size: int | None = None,
    num_codebooks: int = 4,
    sampling_rate: int = 32000,
    variant: str = "mono",
    architecture: str | dict = "tiny",
    fit_codebooks: bool = True,
) -> tuple[PreTrainedModel, ProcessorMixin]:
    """Build a tiny random MusicGen model and its processor (in memory).

    ``architecture`` (a key of :data:`.tiny_configs.ARCHITECTURES`, or such an entry) gives the layer sizes: "tiny"
    by default, or "small", "medium", "large" for a random model of a real checkpoint's size (benchmarks: real speed
    and memory, no download; the tokenizer stays the tiny one, whose ids fit any vocabulary). ``codebook_size``
    defaults to the architecture's (64 tiny, 2048 real). ``fit_codebooks=False`` skips fitting the codec's codebooks
    (every frame then encodes to code 0; encoding costs the same), which takes minutes at the real size.

    ``variant`` picks the checkpoint structure to mirror (``num_codebooks`` is per audio channel, i.e. the
    EnCodec's quantizer count):

    - ``"mono"`` (facebook/musicgen-small): ``(MusicgenForConditionalGeneration, MusicgenProcessor)``.
    - ``"stereo"`` (facebook/musicgen-stereo-small): same classes; the decoder has ``audio_channels=2`` and
      ``2 * num_codebooks`` codebooks interleaved ``[L0, R0, L1, R1, ...]``; the EnCodec stays mono (each
      channel is encoded on its own) and the feature extractor takes ``(2, samples)`` audio.
    - ``"melody"`` (facebook/musicgen-melody): ``(MusicgenMelodyForConditionalGeneration,
      MusicgenMelodyProcessor)`` with 12-bin chroma conditioning (see
      :func:`musicgen_lora.models.processors.melody_feature_extractor`).

    Same ``seed`` -> identical weights.
    """
    check_variant(variant)
    sizes = architecture_sizes(architecture)
    codebook_size = codebook_size or sizes["codec"]["codebook_size"]
    tokenizer = build_tiny_tokenizer()
    model_class, config = musicgen_config(variant, sizes, tokenizer, codebook_size, num_codebooks, sampling_rate)
    with torch.random.fork_rng(devices=[]):  # seed the init without disturbing the caller's global RNG
        torch.manual_seed(seed)
        model = model_class(config)
    model.eval()
    if fit_codebooks:
        init_codebooks(model.audio_encoder, seed=seed)
    model.generation_config = generation_config(special=codebook_size)
    return model, _processor(variant, sampling_rate, tokenizer)


def _processor(variant: str, sampling_rate: int, tokenizer: PreTrainedTokenizerBase) -> ProcessorMixin:
    """The processor of ``variant``, with the feature extractor of the checkpoint it mirrors."""
    if variant == "melody":
        feature_extractor = melody_feature_extractor(sampling_rate=sampling_rate)
        return MusicgenMelodyProcessor(feature_extractor=feature_extractor, tokenizer=tokenizer)
    if variant == "stereo":
        # facebook/musicgen-stereo-*: feature_size 2 (input (2, samples) per clip), left padding
        feature_extractor = EncodecFeatureExtractor(
            feature_size=2, sampling_rate=sampling_rate, padding_value=0.0, padding_side="left"
        )
    else:
        feature_extractor = EncodecFeatureExtractor(feature_size=1, sampling_rate=sampling_rate, padding_value=0.0)
    return MusicgenProcessor(feature_extractor=feature_extractor, tokenizer=tokenizer)


def _holds_model(path: pathlib.Path) -> bool:
    return (path / "config.json").is_file()


def _built_variant(path: pathlib.Path) -> str | None:
    """The variant recorded in a folder built here (``tiny_musicgen.json``; "mono" if unrecorded), else None."""
    try:
        record = json.loads((path / "tiny_musicgen.json").read_text())
    except (OSError, ValueError):
        return None
    return record.get("variant", "mono") if isinstance(record, dict) else None


def _check_existing(out: pathlib.Path, variant: str) -> None:
    built = _built_variant(out)
    if built is not None and built != variant:
        raise FileExistsError(
            f"{out} holds a tiny MusicGen of variant {built!r}, not {variant!r}; use force=True / --force to replace it"
        )


def _fresh_sibling(path: pathlib.Path, tag: str) -> pathlib.Path:
    """Create a new, empty hidden directory next to ``path`` (mode from the umask, unlike mkdtemp's 0700)."""
    for _ in range(100):
        candidate = path.parent / f".{path.name}.{tag}-{os.getpid()}-{os.urandom(4).hex()}"
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary directory next to {path}")


def save_tiny_musicgen(out_dir, seed: int = 0, force: bool = False, variant: str = "mono") -> pathlib.Path:
    """Build the tiny model and save model + processor + generation config to ``out_dir``; return its path.

    ``variant`` is ``"mono"``, ``"stereo"`` or ``"melody"`` (see :func:`build_tiny_musicgen`).
    If ``out_dir`` already holds a model (``config.json``) and ``force`` is false, nothing is touched (but a
    folder built here for another variant raises FileExistsError).
    The folder is written to a temporary sibling directory and renamed into place, so an interrupted build
    never leaves a half-written ``out_dir``. An existing ``out_dir`` that is not a model folder is used only if
    it is an empty folder: ``force`` rebuilds model folders, it never replaces someone's files.

    Raises:
        FileExistsError: ``out_dir`` is a file or a folder of other files, or (without ``force``) holds a tiny model
            of another variant.
    """
    check_variant(variant)
    out = pathlib.Path(out_dir).expanduser().absolute()
    if out.exists() and not _holds_model(out) and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(
            f"{out} exists and is not a model folder (no config.json); choose a new or empty folder (--force only "
            "rebuilds a model folder)"
        )
    if out.exists() and not force and _holds_model(out):
        _check_existing(out, variant)
        print(f"tiny MusicGen already exists at {out} (use --force to rebuild)")
        return out
    out.parent.mkdir(parents=True, exist_ok=True)

    model, processor = build_tiny_musicgen(seed=seed, variant=variant)
    tmp = _fresh_sibling(out, "tmp")
    try:
        _write_folder(tmp, model, processor, seed, variant)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if not _move_into_place(tmp, out, force, variant):
        print(f"tiny MusicGen already exists at {out} (built concurrently)")
        return out
    kind = "" if variant == "mono" else f" {variant} (like {MIRRORS[variant]})"
    print(f"wrote tiny MusicGen{kind} (seed {seed}) to {out}")
    return out


def _write_folder(
    folder: pathlib.Path, model: PreTrainedModel, processor: ProcessorMixin, seed: int, variant: str
) -> None:
    """Save model, processor and the build record (``tiny_musicgen.json``) into ``folder``."""
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    record = {"builder": "musicgen_lora.tiny", "seed": seed}
    if variant != "mono":  # mono folders stay byte-identical to those built before variants existed
        record.update(variant=variant, mirrors=MIRRORS[variant])
    (folder / "tiny_musicgen.json").write_text(json.dumps(record, indent=2) + "\n")
    # transformers writes model.safetensors with mode 0600; give every file the umask-derived mode
    mode = (folder / "tiny_musicgen.json").stat().st_mode & 0o777
    for path in folder.iterdir():
        if path.is_file():
            path.chmod(mode)


def _move_into_place(tmp: pathlib.Path, out: pathlib.Path, force: bool, variant: str) -> bool:
    """Rename the finished ``tmp`` folder to ``out``, replacing what is there; False (and ``tmp`` removed) when a
    concurrent build of the same folder got there first and ``force`` is not set. On any error ``tmp`` is removed
    and a previous ``out`` is put back."""
    old = None
    try:
        if out.is_symlink() or (out.exists() and not out.is_dir()):
            out.unlink()
        elif out.exists():
            old = _fresh_sibling(out, "old")
            os.rename(out, old / out.name)  # move the previous folder aside (atomic), delete it afterwards
        try:
            os.rename(tmp, out)
        except OSError:
            # lost a race with a concurrent build of the same folder: keep theirs unless forced
            if _holds_model(out) and not force:
                shutil.rmtree(tmp, ignore_errors=True)
                _check_existing(out, variant)
                return False
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not out.exists():
            os.rename(old / out.name, out)  # put the previous folder back
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return True


def main(argv: list[str] | None = None) -> pathlib.Path:
    """Command-line entry point; returns the model folder."""
    parser = CommandLineParser(
        prog="python -m musicgen_lora.tiny",
        description=(
            "Build a tiny, randomly initialised but fully working MusicGen model folder (32 kHz, 4 codebooks "
            "per channel, 50 Hz) locally, without the Hugging Face Hub. Load it with "
            "AutoModelForTextToWaveform.from_pretrained(OUT_DIR) and AutoProcessor.from_pretrained(OUT_DIR) "
            "(melody without torchaudio: musicgen_lora.models.processors.load_processor(OUT_DIR))."
        ),
    )
    parser.add_argument("out_dir", metavar="OUT_DIR", help="folder to write the model to")
    parser.add_argument("--seed", type=int, default=0, help="random seed; same seed -> identical weights (default 0)")
    parser.add_argument(
        "--force", action="store_true", help="rebuild even if OUT_DIR already holds a model (config.json)"
    )
    parser.add_argument(
        "--variant",
        choices=VARIANTS,
        default="mono",
        help="checkpoint structure to mirror: mono = facebook/musicgen-small, stereo = facebook/musicgen-stereo-small "
        "(8 interleaved codebooks), melody = facebook/musicgen-melody (chroma conditioning) (default mono)",
    )
    with exit_on_user_error(argv):
        args = parser.parse_args(argv)
        try:
            ensure_writable_folder(pathlib.Path(args.out_dir).expanduser().absolute().parent, "OUT_DIR's folder")
            return save_tiny_musicgen(args.out_dir, seed=args.seed, force=args.force, variant=args.variant)
        except FileExistsError as err:
            if err.errno is not None:  # the system's, not one of ours naming the fix
                raise UserError(f"cannot write '{args.out_dir}' ({err.strerror}); choose another OUT_DIR") from None
            raise UserError(str(err)) from None
        except OSError as err:
            raise UserError(f"cannot write '{args.out_dir}' ({err.strerror}); choose another OUT_DIR") from None
