"""The model to generate with: a base MusicGen with one LoRA adapter or a weighted blend of several; and merging them
into a standalone model.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import ModelCard, ModelCardData
from peft import PeftConfig, PeftModel
from safetensors import SafetensorError

from ..config.arguments import ModelArguments
from ..errors import UserError, one_line
from ..files import hub_id_of, readable_weights
from ..models.loading import load_model_and_processor, pick_device

logger = logging.getLogger(__name__)


def adapter_base(adapter: str) -> str | None:
    """The base model an adapter was trained on (``adapter_config.json``), or None if it cannot be read."""
    try:
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
    if base_model is None:
        base_model = adapter_base(adapters[0]) if adapters else None
        if base_model is None:
            raise UserError(
                "--base_model is not set and no adapter records its base; pass --base_model (e.g. "
                "facebook/musicgen-small)"
            )
    model, processor = load_model_and_processor(ModelArguments(model_name_or_path=base_model))
    if weights is not None and len(weights) != len(adapters):
        raise UserError(
            f"--adapter_weights has {len(weights)} value(s) for {len(adapters)} adapter(s); give one per adapter"
        )
    if adapters:
        model = _apply_adapters(model, adapters, weights, blend)
    model.eval()
    model.to(pick_device(device))
    return model, processor, base_model


def _apply_adapters(
    model: torch.nn.Module, adapters: list[str], weights: list[float] | None, blend: str
) -> torch.nn.Module:

    names = [f"adapter_{i}" for i in range(len(adapters))]
    try:
        peft_model = PeftModel.from_pretrained(model, adapters[0], adapter_name=names[0])
        for name, adapter in zip(names[1:], adapters[1:], strict=False):
            peft_model.load_adapter(adapter, adapter_name=name)
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as err:
        raise UserError(
            f"cannot load adapter: {one_line(err)[:300]}; give an adapter folder (with adapter_config.json) or Hub id "
            f"trained on this base"
        ) from None
    if len(adapters) == 1 and weights is None:
        return peft_model
    weights = weights if weights is not None else [1.0 / len(adapters)] * len(adapters)
    try:
        peft_model.add_weighted_adapter(names, weights, adapter_name="blend", combination_type=blend)
    except (ValueError, TypeError) as err:
        raise UserError(
            f"cannot blend the adapters with --blend {blend}: {one_line(err)[:300]}; try --blend cat (any ranks)"
        ) from None
    peft_model.set_adapter("blend")
    for name in names:  # the blend holds what is needed; the merged export must contain only it
        peft_model.delete_adapter(name)
    logger.info("Blended %s with weights %s (%s)", ", ".join(adapters), weights, blend)
    return peft_model


def merge_and_save(
    model: torch.nn.Module, processor: Any, out_dir: str | Path, base_model: str
) -> tuple[torch.nn.Module, Path]:
    """Fold the LoRA weights into the base (``merge_and_unload``) and save a standalone model + processor + card.

    Returns:
        ``(merged model, folder)``; the folder loads with ``AutoModelForTextToWaveform.from_pretrained`` and
        ``pipeline("text-to-audio")``.
    """

    if not isinstance(model, PeftModel):
        raise UserError("--merge needs at least one --adapter to merge into the base model")
    merged = model.merge_and_unload()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out)
    readable_weights(out)
    processor.save_pretrained(out)
    base_id = hub_id_of(base_model)
    data = ModelCardData(
        base_model=base_id,
        base_model_relation="merge" if base_id else None,
        library_name="transformers",
        pipeline_tag="text-to-audio",
        tags=["musicgen", "lora", "merged", "text-to-audio", "music"],
    )
    base = f"[{base_id}](https://huggingface.co/{base_id})" if base_id else "A MusicGen model"
    ModelCard(
        f"---\n{data.to_yaml()}\n---\n\n# Merged MusicGen\n\n{base} "
        "with LoRA weights merged in: loads without PEFT.\n\n```python\nfrom transformers import pipeline\n\n"
        f'music = pipeline("text-to-audio", model="{out.name}")\nout = music("lofi hip hop, piano", '
        f'forward_params={{"do_sample": True}})\n```\n'
    ).save(out / "README.md")
    logger.info("Wrote the merged model to %s", out)
    return merged, out
