"""The models compared: the base, LoRA adapters swapped onto one base, fully fine-tuned models; held-out cross-entropy;
CLAP similarity.
"""

from __future__ import annotations

import contextlib
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
) -> dict[str, float]:
    """Per-codebook cross-entropy over every target of ``windows``, exactly as training's eval loop computes it.

    Returns:
        ``ce_q1..ce_qK``, ``ce`` (the mean over all targets), ``ppl``, and ``targets`` (how many were counted).
    """
    evaluation = collator.for_evaluation()
    device = next(model.parameters()).device
    stats = CodebookStats()
    targets = 0
    was_training = model.training
    model.eval()
    try:
        for start in progress(iterable=range(0, len(windows), batch_size), desc="Cross-entropy", unit="batch"):
            rows = [windows[i] for i in range(start, min(start + batch_size, len(windows)))]
            batch = {k: v.to(device) for k, v in evaluation(rows).items()}
            logits = model(**batch).logits
            sums, counts = codebook_cross_entropy(logits, batch["labels"])
            stats.add(sums.cpu(), counts.cpu())
            targets += int(counts.sum())
    finally:
        model.train(was_training)
    metrics = stats.report(lambda tensor: tensor)
    metrics["targets"] = targets
    return metrics


class ClapScorer:
    """Cosine similarity between CLAP's text and audio embeddings (laion CLAP checkpoints in transformers' format)."""

    def __init__(self, path: str, device: torch.device):
        self.clap = Clap(path, "--clap_model", device)

    def score(self, text: str, audios: list[np.ndarray], sr: int) -> list[float]:
        # clips over CLAP's 10 s window are cropped at a random place: seed 0 makes it reproducible
        audio_embeds = self.clap.audio_embeddings(audios, sr, seed=0)
        text_embeds = self.clap.text_embeddings([text])
        return [float(v) for v in (audio_embeds @ text_embeds.T)[:, 0]]
