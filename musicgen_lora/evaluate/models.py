"""The models compared: the base, LoRA adapters swapped onto one base, fully fine-tuned models; held-out cross-entropy;
CLAP similarity.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
import torch
from peft import PeftModel
from safetensors import SafetensorError
from transformers import AutoModelForTextToWaveform, PreTrainedModel

from ..errors import UserError, one_line
from ..files import read_user_text
from ..logs import progress
from ..models.loading import ready_for_training
from ..prepare.clap import Clap
from ..train.collator import MusicgenCollator
from ..train.trainer import CodebookStats, codebook_cross_entropy

BASE = "base"


@dataclass
class ModelSpec:
    name: str
    path: str | None  # None for the base model
    kind: str = "base"  # "base", "lora" (a PEFT adapter folder) or "full" (a whole fine-tuned model folder)


def classify_model_dir(name: str, path: str) -> ModelSpec:
    """``NAME=DIR`` of the command line -> a LoRA adapter folder or a fully fine-tuned model folder.

    Raises:
        UserError: the folder is missing or holds neither.
    """
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise UserError(f"model '{name}': folder '{path}' not found; point --model {name}=DIR at a training output_dir")
    if (folder / "adapter_config.json").is_file():
        config = folder / "adapter_config.json"
        try:
            json.loads(read_user_text(config, "adapter config"))
        except json.JSONDecodeError as err:
            raise UserError(
                f"model '{name}': '{config}' is damaged (not JSON: {err.msg}, line {err.lineno}); copy it back from "
                "the run (or a checkpoint-N folder of it), or train again"
            ) from None
        return ModelSpec(name, str(folder), "lora")
    if (folder / "config.json").is_file():
        return ModelSpec(name, str(folder), "full")
    raise UserError(
        f"model '{name}': '{path}' holds no adapter (adapter_config.json) or model (config.json); point it at a "
        "training output_dir or one of its checkpoint-N folders"
    )


@contextlib.contextmanager
def adapted(base: PreTrainedModel, spec: ModelSpec, cache_dir: str | None) -> Iterator[torch.nn.Module]:
    """The model to evaluate for ``spec``: the base itself, the base with a LoRA adapter, or a full model.

    A LoRA adapter is injected into ``base`` and removed again afterwards (``unload``), so the same base weights
    serve every adapter.
    """
    if spec.kind == "base":
        yield base
        return
    if spec.kind == "full":
        try:
            model = AutoModelForTextToWaveform.from_pretrained(spec.path, cache_dir=cache_dir)
        except (OSError, ValueError, SafetensorError) as err:
            raise UserError(
                f"cannot load model '{spec.name}' from '{spec.path}': {one_line(err)[:200]}; check the folder"
            ) from None
        ready_for_training(model)
        yield model.to(next(base.parameters()).device).eval()
        return

    try:
        model = PeftModel.from_pretrained(base, spec.path)
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as err:
        raise UserError(
            f"cannot load adapter '{spec.name}' from '{spec.path}' onto the base model: {one_line(err)[:200]}; check "
            "that --base_model is the model the adapter was trained from"
        ) from None
    model.eval()
    try:
        yield model
    finally:
        model.unload()  # restores the original modules of `base` (no merge)


@torch.no_grad()
def heldout_cross_entropy(
    model: torch.nn.Module, windows: datasets.Dataset, collator: MusicgenCollator, batch_size: int
) -> tuple[dict[str, float], tuple[np.ndarray, np.ndarray]]:
    """Per-codebook cross-entropy over every target of ``windows``, exactly as training's eval loop computes it.

    Returns:
        ``(metrics, (sums, counts))``: ``ce_q1..ce_qK``, ``ce`` (the mean over all targets), ``ppl`` and ``targets``
        (how many were counted); and each window's summed cross-entropy and target count per codebook, each
        (windows, K), for the paired comparison (:mod:`.comparison`).
    """
    evaluation = collator.for_evaluation()
    device = next(model.parameters()).device
    stats = CodebookStats()
    per_window: list[tuple[torch.Tensor, torch.Tensor]] = []
    was_training = model.training
    model.eval()
    try:
        for start in progress(iterable=range(0, len(windows), batch_size), desc="Cross-entropy", unit="batch"):
            rows = [windows[i] for i in range(start, min(start + batch_size, len(windows)))]
            batch = {k: v.to(device) for k, v in evaluation(rows).items()}
            logits = model(**batch).logits  # (bsz * K, steps, vocab)
            codebooks = batch["labels"].shape[-1]
            for row in range(len(rows)):
                sums, counts = codebook_cross_entropy(
                    logits[row * codebooks : (row + 1) * codebooks], batch["labels"][row : row + 1]
                )
                per_window.append((sums.double().cpu(), counts.double().cpu()))
                stats.add(sums.cpu(), counts.cpu())
    finally:
        model.train(was_training)
    metrics = stats.report(lambda tensor: tensor)
    sums = torch.stack([s for s, _ in per_window]).numpy() if per_window else np.zeros((0, 0))
    counts = torch.stack([c for _, c in per_window]).numpy() if per_window else np.zeros((0, 0))
    metrics["targets"] = int(counts.sum())
    return metrics, (sums, counts)


class ClapScorer:
    """CLAP (laion checkpoints in transformers' format, e.g. laion/larger_clap_music) for two measures: the cosine
    similarity between a clip and its prompt, and the audio embeddings of FAD.

    FAD's embeddings follow fadtk's ``clap-laion-music`` (Gui et al. 2024): the clip down-mixed to mono at CLAP's
    48 kHz, rounded to 16 bits, cut into 10 s windows starting every second (the last ones zero-padded), one
    embedding per window.
    """

    HOP_SECONDS = 1.0

    def __init__(self, path: str, device: torch.device):
        self.clap = Clap(path, "--clap_model", device)

    def scores(self, texts: list[str], audios: list[np.ndarray], sr: int) -> list[float]:
        """The similarity of each clip to its own text."""
        # clips over CLAP's 10 s window are cropped at a random place: seed 0 makes it reproducible
        audio_embeds = self.clap.audio_embeddings(audios, sr, seed=0)
        distinct = sorted(set(texts))
        text_embeds = self.clap.text_embeddings(distinct)
        rows = [distinct.index(text) for text in texts]
        return [float(audio_embeds[i] @ text_embeds[row]) for i, row in enumerate(rows)]

    def window_embeddings(self, audio: np.ndarray, sr: int) -> np.ndarray:
        """FAD's embeddings of one (channels, samples) clip: (windows, dim) float64."""
        rate = self.clap.sampling_rate
        mono = np.round(np.clip(self.clap.to_clap_rate(audio, sr), -1.0, 1.0) * 32767.0) / 32767.0
        window, hop = int(round(self.clap.window_seconds * rate)), int(round(self.HOP_SECONDS * rate))
        chunks = []
        for start in range(0, max(1, len(mono)), hop):
            chunk = mono[start : start + window].astype(np.float32)
            chunks.append(np.pad(chunk, (0, window - len(chunk))))
        return self.clap.audio_embeddings(chunks, rate).double().numpy()


@torch.no_grad()
def code_latents(model: PreTrainedModel, codes: np.ndarray) -> np.ndarray:
    """The EnCodec quantiser's embedding of (K, frames) codes (the sum of each codebook's code vectors, what the
    codec's decoder reads): (frames * channels, dim) float64, stereo channels pooled as :func:`~musicgen_lora.models.
    codec.encodec_latents` pools them. Per-song FAD compares generated and training clips on these, from their codes
    alone: both sides are codes, nothing is decoded."""
    channels = int(model.config.decoder.audio_channels)
    quantizer = model.audio_encoder.quantizer
    codes_t = torch.as_tensor(np.asarray(codes), dtype=torch.long, device=next(model.audio_encoder.parameters()).device)
    parts = [quantizer.decode(codes_t[c::channels][:, None])[0].T for c in range(channels)]  # each (frames, dim)
    return torch.cat(parts, dim=0).double().cpu().numpy()
