"""What every model of one evaluation is measured against: the base model, the evaluation data and its references
(one Gaussian per dataset and embedding for the Fréchet distances), the training data (the memorisation check and the
reference of per-song FAD) and CLAP."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers import PreTrainedModel, ProcessorMixin

from ..audio import analysis
from ..config.arguments import ModelArguments
from ..memorisation.check import CopyChecker
from ..models.codec import decode_codes, encodec_latents
from ..models.loading import is_melody_model, load_model_and_processor, pick_device
from ..models.spec import AudioSpec, chroma_frames_per_code_frame
from ..prepare.cache_keys import module_fingerprint
from ..train.collator import MusicgenCollator
from .data import EvalData, EvalSettings, load_eval_data, load_training_codes
from .frechet import Gaussian, RunningGaussian
from .models import ClapScorer, code_latents

logger = logging.getLogger(__name__)

CLAP_LEFT_OUT = (
    "FAD on CLAP embeddings and the CLAP score are left out: give --clap_model FOLDER (laion/larger_clap_music, "
    "downloaded with `hf download laion/larger_clap_music --local-dir FOLDER`) to measure them"
)
PER_SONG_LEFT_OUT = (
    "Per-song FAD to the training files and the memorisation check are left out: give --train_dataset DATA (or "
    "--config RUN) to measure them"
)


@dataclass
class Reference:
    """One evaluation dataset's reference for one embedding: its Gaussian and how many clips and frames made it."""

    gaussian: Gaussian
    clips: int
    frames: int


@dataclass
class EvalContext:
    """The base model, the data and its references (see the module docstring)."""

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
    references: dict[str, dict[str, Reference]]  # dataset -> embedding -> reference
    training_reference: Gaussian | None  # the training files' code latents (per-song FAD)
    left_out: list[str] = field(default_factory=list)  # one line per metric left out, naming the option

    def embed(self, audio: np.ndarray) -> dict[str, np.ndarray]:
        """The frame embeddings of one (channels, samples) clip for the Fréchet distances: EnCodec latents, MFCC +
        chroma descriptors, and CLAP windows when a CLAP checkpoint was given."""
        sr = self.spec.sampling_rate
        embeddings = {
            "encodec_latent": encodec_latents(self.base, audio),
            "descriptor": analysis.frame_descriptors(audio, sr),
        }
        if self.clap is not None:
            embeddings["clap"] = self.clap.window_embeddings(audio, sr)
        return embeddings


def set_up(settings: EvalSettings) -> EvalContext:
    """Load the base model, the evaluation data (with its references) and the training codes."""
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
    left_out = []
    clap = ClapScorer(settings.clap_model, device) if settings.clap_model else None
    if clap is None:
        left_out.append(CLAP_LEFT_OUT)
    training = load_training_codes(settings, base, codec)
    checker, training_reference = None, None
    if training is not None:  # indexed once; the melody index decodes every training clip with the base's EnCodec
        checker = CopyChecker.from_dataset(
            training,
            spec.frame_rate,
            (lambda c: decode_codes(base, c)) if settings.melody_check else None,
            spec.sampling_rate,
            copy_threshold=settings.copy_threshold,
            melody_threshold=settings.melody_threshold,
        )
        running = RunningGaussian()
        for codes in training["codes"]:
            running.add(code_latents(base, np.asarray(codes)))
        training_reference = running.gaussian()
    else:
        left_out.append(PER_SONG_LEFT_OUT)
    context = EvalContext(
        settings, out, device, base, processor, spec, collator, eval_data, checker, clap, {}, training_reference,
        left_out,
    )  # fmt: skip
    for data in eval_data:
        frames: dict[str, list[np.ndarray]] = {}
        for audio in data.reference_audio:
            for name, embedding in context.embed(audio).items():
                frames.setdefault(name, []).append(embedding)
        context.references[data.spec.name] = {
            name: Reference(_gaussian(np.concatenate(clips)), len(clips), sum(len(c) for c in clips))
            for name, clips in frames.items()
            if sum(len(c) for c in clips) >= 2
        }
    for line in left_out:
        logger.info(line)
    return context


def _gaussian(frames: np.ndarray) -> Gaussian:
    return Gaussian(frames.mean(axis=0), np.cov(frames, rowvar=False))
