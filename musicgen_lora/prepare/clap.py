"""CLAP (contrastive language-audio pretraining) from a local transformers checkpoint, in one place.

Used by :mod:`musicgen_lora.evaluate` (text-audio similarity of generated clips) and
:mod:`musicgen_lora.prepare.captions`
(zero-shot genre/mood/instrument tags). The checkpoint is a folder holding a transformers ``ClapModel`` and its
processor (e.g. ``hf download laion/clap-htsat-unfused --local-dir clap``); nothing is downloaded here. Audio is
down-mixed to mono and resampled to the processor's rate (48 kHz for the LAION checkpoints) before embedding."""

from __future__ import annotations

import numpy as np
import torch

from ..audio.analysis import to_mono
from ..audio.io import resample
from ..config.validation import check_clap_folder
from ..errors import UserError, one_line
from ..rng import preserved_rng


class Clap:
    """A CLAP checkpoint with its processor; embeddings are L2-normalised float32 tensors on the CPU.

    Args:
        path: local checkpoint folder.
        option: the option that named it, for error messages (``--clap_model``, ``clap_model_name_or_path``).
        device: where the model runs.

    Raises:
        UserError: not a local checkpoint folder, or it cannot be loaded as a ``ClapModel``.
    """

    def __init__(self, path: str, option: str, device: torch.device | str = "cpu"):
        folder = check_clap_folder(path, option)
        from transformers import AutoProcessor, ClapModel

        try:
            self.model = ClapModel.from_pretrained(folder).to(device).eval()
            self.processor = AutoProcessor.from_pretrained(folder)
        except Exception as err:  # noqa: BLE001 - any loading problem is the user's checkpoint
            raise UserError(
                f"cannot load the CLAP checkpoint '{path}' ({option}): {one_line(err)[:200]}; pass a folder holding a "
                "transformers ClapModel (config.json, weights, processor files)"
            ) from None
        self.device = torch.device(device)
        self.sampling_rate = int(self.processor.feature_extractor.sampling_rate)  # 48 kHz for LAION CLAP
        self.window_seconds = self.processor.feature_extractor.nb_max_samples / self.sampling_rate  # 10 s

    @property
    def logit_scale(self) -> float:
        """The audio-to-text logit scale ClapModel applies (``logits_per_audio = scale * cosine``)."""
        return float(self.model.logit_scale_a.detach().exp())

    def to_clap_rate(self, audio: np.ndarray, sr: int) -> np.ndarray:
        """Mono float32 at the checkpoint's rate, ``(samples,)``."""
        return resample(to_mono(audio)[None].astype(np.float32), sr, self.sampling_rate)[0]

    @torch.no_grad()
    def audio_embeddings(self, audios: list[np.ndarray], sr: int, seed: int = 0) -> torch.Tensor:
        """Normalised audio embeddings, (len(audios), dim).

        Clips longer than CLAP's window are cropped by the processor at a random place; numpy's generator is seeded
        with ``seed`` for that (and restored afterwards), so the same clips always give the same embeddings.
        """

        mono = [self.to_clap_rate(audio, sr) for audio in audios]
        with preserved_rng():
            np.random.seed(seed)
            inputs = self.processor(audio=mono, sampling_rate=self.sampling_rate, return_tensors="pt")
        kwargs = {k: v.to(self.device) for k, v in inputs.items() if k in ("input_features", "is_longer")}
        embeds = self.model.get_audio_features(**kwargs)
        embeds = getattr(embeds, "pooler_output", embeds)
        return torch.nn.functional.normalize(embeds.float(), dim=-1).cpu()

    @torch.no_grad()
    def text_embeddings(self, texts: list[str]) -> torch.Tensor:
        """Normalised text embeddings, (len(texts), dim)."""
        inputs = self.processor(text=list(texts), return_tensors="pt", padding=True)
        embeds = self.model.get_text_features(
            input_ids=inputs["input_ids"].to(self.device), attention_mask=inputs["attention_mask"].to(self.device)
        )
        embeds = getattr(embeds, "pooler_output", embeds)
        return torch.nn.functional.normalize(embeds.float(), dim=-1).cpu()
