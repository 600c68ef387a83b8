"""The embedded default: an offline demo that needs no download.

``python finetune_musicgen.py`` with no config file trains LoRA adapters on a tiny random MusicGen (built by
:mod:`musicgen_lora.tiny`) over a procedural corpus (made by :mod:`musicgen_lora.synth`), then renders a WAV. It
exercises every real code path in a few minutes on a laptop CPU; the music it makes is noise-like, because the
tiny model is untrained, but the adapter it writes loads exactly as one trained on ``facebook/musicgen-small``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..config.arguments import ParsedConfig
from ..config.demo_paths import DEMO_CORPUS, DEMO_MODEL, DEMO_ROOT
from ..errors import UserError
from .synth import synthesize_corpus
from .tiny import save_tiny_musicgen

logger = logging.getLogger(__name__)


DEMO_CLIPS = 16


DEMO_CLIP_SECONDS = 8.0


DEMO_CONFIG: dict[str, Any] = {
    "model_name_or_path": DEMO_MODEL,
    "dataset_name": DEMO_CORPUS,
    "data_cache_dir": f"{DEMO_ROOT}/cache",
    "output_dir": f"{DEMO_ROOT}/lora",
    "overwrite_output_dir": True,  # running the demo again replaces its previous result
    "max_duration_in_seconds": 6.0,  # random 6 s windows of the 8 s clips
    "min_duration_in_seconds": 2.0,
    "lora_r": 8,
    "lora_alpha": 16,
    "learning_rate": 1e-3,  # the tiny model is far from its optimum; a real model wants 1e-4 to 2e-4
    "per_device_train_batch_size": 4,
    "num_train_epochs": 40,
    "logging_steps": 10,
    "save_strategy": "no",
    "seed": 0,
    "report_to": "none",
    "sample_prompts": ["lofi hip hop, 84 bpm, A minor, piano", "techno, 128 bpm, F minor, saw synth"],
    "sample_duration_in_seconds": 4.0,
}


def ensure_demo_assets(parsed: ParsedConfig) -> None:
    """Build the tiny model and the demo corpus if the config points at them and they are missing."""
    model = Path(DEMO_MODEL) if parsed.model.model_name_or_path == DEMO_MODEL else None
    corpus = Path(DEMO_CORPUS) if parsed.data.dataset_name == DEMO_CORPUS else None
    build_demo_assets(model, corpus)


def build_demo_assets(model_dir: Path | None, corpus_dir: Path | None) -> None:
    """The demo's tiny random MusicGen in ``model_dir`` and its synthetic captioned corpus in ``corpus_dir``, each
    built only where it is missing (None: not wanted)."""
    build_corpus = corpus_dir is not None and not (corpus_dir / "metadata.jsonl").is_file()
    if build_corpus and corpus_dir.is_dir() and any(corpus_dir.iterdir()):  # said before the model's build
        raise UserError(
            f"the demo corpus folder '{corpus_dir}' holds files but no metadata.jsonl (the corpus would be written "
            "over them); move it, or run the demo from another folder"
        )
    if model_dir is not None and not (model_dir / "config.json").is_file():
        logger.info("Building the tiny demo MusicGen in %s", model_dir)
        try:
            save_tiny_musicgen(model_dir)
        except FileExistsError:  # a folder of someone else's files where the demo model goes: left alone
            raise UserError(
                f"the demo model folder '{model_dir}' holds files but no model (config.json); move it, or run the demo "
                "from another folder"
            ) from None
    if build_corpus:
        logger.info("Synthesising the demo corpus in %s", corpus_dir)
        synthesize_corpus(corpus_dir, clips=DEMO_CLIPS, seconds=DEMO_CLIP_SECONDS, seed=0)
