"""Zero-shot genre, mood and instrument tags from a local CLAP checkpoint: each track embedded on a few fixed excerpts,
the label prompts embedded once, everything cached.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from ..audio import analysis
from ..config.arguments import DataArguments
from ..config.caption_template import TAG_SETS
from ..files import atomic_write_json, files_fingerprint
from .clap import Clap
from .measurements import measurement_cache_path

logger = logging.getLogger(__name__)


CLAP_EXCERPTS = 3  # at most this many CLAP windows per track


CLAP_VERSION = 1  # bump when the excerpt positions change


# How each set's labels are put to CLAP (LAION CLAP was trained on captions like these).
LABEL_PROMPTS = {"genre": "This is {} music.", "mood": "This music is {}.", "instrument": "This is a sound of {}."}


def clap_excerpts(mono: np.ndarray, sr: int, window_seconds: float) -> list[np.ndarray]:
    """Up to CLAP_EXCERPTS windows of ``window_seconds`` at fixed, evenly spread places (the whole clip if shorter)."""
    window = int(window_seconds * sr)
    if len(mono) <= window:
        return [mono]
    count = min(CLAP_EXCERPTS, math.ceil(len(mono) / window))
    starts = [int((len(mono) - window) * (i + 1) / (count + 1)) for i in range(count)]
    return [mono[start : start + window] for start in starts]


class ClapTagger:
    """Zero-shot tags from a local CLAP checkpoint, loaded only when something is not cached yet."""

    def __init__(self, data_args: DataArguments, cache_root: Path):

        self.path = data_args.clap_model_name_or_path
        self.cache_root = cache_root
        self.fingerprint = files_fingerprint(self.path)
        self.threshold = data_args.clap_tag_threshold
        self.labels = {name: list(getattr(data_args, f"clap_{name}_labels")) for name in TAG_SETS}
        self._clap: Clap | None = None
        self._text: dict[str, Any] | None = None

    @property
    def clap(self) -> Clap:
        if self._clap is None:
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
            self._clap = Clap(self.path, "clap_model_name_or_path", device)
            logger.info("Tagging tracks with CLAP (%s)", self.path)
        return self._clap

    @property
    def kind(self) -> str:
        """Cache kind of a track's audio embedding: the checkpoint and the excerpt scheme."""
        return f"clap|{self.fingerprint}|{CLAP_VERSION}"

    def embed(self, audio: np.ndarray, sr: int) -> list[float]:
        """One track's CLAP embedding: the normalised mean of its excerpts' embeddings."""
        clap = self.clap
        mono = analysis.to_mono(audio).astype(np.float32)
        excerpts = clap_excerpts(mono, sr, clap.window_seconds)
        mean = clap.audio_embeddings(excerpts, sr).mean(dim=0)
        return (mean / mean.norm().clamp_min(1e-12)).tolist()

    def text_embeddings(self) -> dict[str, Any]:
        """Each set's label prompts embedded, and CLAP's logit scale (cached per checkpoint and prompts)."""
        if self._text is None:
            prompts = {
                name: [LABEL_PROMPTS[name].format(label) for label in labels] for name, labels in self.labels.items()
            }
            path = measurement_cache_path(self.cache_root, "clap-text", json.dumps([self.fingerprint, prompts]))
            if path.is_file():
                self._text = json.loads(path.read_text(encoding="utf-8"))
            else:
                every = [p for name in TAG_SETS for p in prompts[name]]
                vectors = self.clap.text_embeddings(every).tolist() if every else []
                self._text = {"scale": self.clap.logit_scale, "sets": {}}
                for name in TAG_SETS:
                    self._text["sets"][name], vectors = vectors[: len(prompts[name])], vectors[len(prompts[name]) :]
                atomic_write_json(path, self._text)
        return self._text

    def probabilities(self, embedding: list[float]) -> dict[str, dict[str, float]]:
        """Per set, each label's probability (softmax of CLAP's scaled similarities, as transformers' zero-shot
        audio classification pipeline computes them)."""
        text = self.text_embeddings()
        audio = np.asarray(embedding, dtype=np.float64)
        out = {}
        for name in TAG_SETS:
            if not self.labels[name]:
                continue
            logits = text["scale"] * (np.asarray(text["sets"][name], dtype=np.float64) @ audio)
            probs = np.exp(logits - logits.max())
            out[name] = dict(zip(self.labels[name], (probs / probs.sum()).tolist(), strict=False))
        return out

    def best_labels(self, embedding: list[float]) -> dict[str, tuple[str, float]]:
        """Per set, its most probable label and that probability (the tag's confidence)."""
        return {
            name: max(probs.items(), key=lambda item: item[1]) for name, probs in self.probabilities(embedding).items()
        }

    def tags_of(self, best: dict[str, tuple[str, float]]) -> dict[str, str]:
        """Per set, the label of :meth:`best_labels` when its probability reaches the threshold, else ``""``."""
        tags = {name: "" for name in TAG_SETS}
        tags.update({name: label for name, (label, prob) in best.items() if prob >= self.threshold})
        return tags
