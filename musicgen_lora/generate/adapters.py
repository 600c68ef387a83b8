"""The model to generate with: a base MusicGen with one LoRA adapter or a weighted blend of several; and merging them
into a standalone model.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import ModelCard, ModelCardData, try_to_load_from_cache
from peft import PeftConfig, PeftModel
from peft.utils import get_peft_model_state_dict, load_peft_weights
from safetensors import SafetensorError

from ..config.arguments import ModelArguments
from ..errors import UserError, one_line
from ..files import hub_id_of, is_local_path, looks_like_hub_id, read_json_object, readable_weights
from ..models.loading import load_model_and_processor, pick_device

logger = logging.getLogger(__name__)

ADAPTER_CONFIG = "adapter_config.json"


def check_adapter_folder(adapter: str) -> None:
    """A local adapter's folder, checked before any model loads: it exists, holds an ``adapter_config.json`` and that
    file is a JSON object (a Hub id is left to PEFT).

    Raises:
        UserError: naming the folder or file and what is wrong with it (a run stopped before its end names its newest
            checkpoint).
    """
    if not is_local_path(adapter):
        return
    folder = Path(adapter).expanduser()
    config = folder / ADAPTER_CONFIG
    problem = None
    if not folder.exists():
        problem = "not found; give an adapter folder (with adapter_config.json) or Hub id"
    elif not folder.is_dir():
        problem = f"it is a file; give the folder that holds {ADAPTER_CONFIG}"
    elif not config.is_file():
        checkpoints = sorted(folder.glob(f"checkpoint-*/{ADAPTER_CONFIG}"), key=lambda p: _step(p.parent.name))
        problem = (
            f"it holds no {ADAPTER_CONFIG} (a run that has not finished?); give one of its checkpoints, e.g. "
            f"'{checkpoints[-1].parent}'"
            if checkpoints
            else f"it holds no {ADAPTER_CONFIG}; give the output_dir of a finished training run"
        )
    else:
        try:
            if not isinstance(json.loads(config.read_text(encoding="utf-8")), dict):
                problem = f"'{config}' holds no JSON object"
        except UnicodeDecodeError:
            problem = f"'{config}' is not UTF-8 text"
        except json.JSONDecodeError as err:
            problem = f"'{config}' is not valid JSON ({err.msg} at line {err.lineno}, column {err.colno})"
        if problem is not None:
            problem += "; restore that file (each checkpoint of the run holds a copy)"
    if problem is not None:
        raise UserError(f"cannot load adapter '{adapter}': {problem}")


def _step(name: str) -> int:
    digits = name.rpartition("-")[2]
    return int(digits) if digits.isdigit() else -1


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
    for adapter in adapters:
        check_adapter_folder(adapter)
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
    for adapter in adapters:
        check_same_architecture(model, adapter)
    try:
        peft_model = PeftModel.from_pretrained(model, adapters[0], adapter_name=names[0])
        for name, adapter in zip(names[1:], adapters[1:], strict=False):
            peft_model.load_adapter(adapter, adapter_name=name)
        for name, adapter in zip(names, adapters, strict=True):
            check_adapter_fits(peft_model, name, adapter)
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


def _architecture(config: dict[str, Any]) -> dict[str, Any]:
    """What an adapter's weights depend on, from a MusicGen ``config.json``."""
    decoder = config.get("decoder") or {}
    return {
        "model_type": config.get("model_type"),
        "audio_channels": decoder.get("audio_channels", 1),
        "num_codebooks": decoder.get("num_codebooks"),
        "hidden_size": decoder.get("hidden_size"),
        "num_hidden_layers": decoder.get("num_hidden_layers"),
    }


def _recorded_base_config(adapter: str) -> dict[str, Any]:
    """The ``config.json`` of the base an adapter records, where it can be read without the network ({} if not)."""
    base = adapter_base(adapter)
    if not base:
        return {}
    path = Path(base).expanduser() / "config.json"
    if not path.is_file() and looks_like_hub_id(base):  # a Hub id: its cached config, if it was downloaded
        cached = try_to_load_from_cache(base, "config.json")
        path = Path(cached) if isinstance(cached, str) else path
    return read_json_object(path)


def check_same_architecture(model: torch.nn.Module, adapter: str) -> None:
    """Refuse an adapter whose recorded base is another kind of MusicGen than ``model`` (mono, stereo or melody,
    another size), when that base's config can be read here.

    Raises:
        UserError: naming what differs and the base the adapter records.
    """
    recorded = _recorded_base_config(adapter)
    if not recorded:
        return
    theirs, ours = _architecture(recorded), _architecture(model.config.to_dict())
    changed = [f"{key} {theirs[key]} -> {ours[key]}" for key in theirs if theirs[key] != ours[key]]
    if changed:
        raise UserError(
            f"adapter '{adapter}' was trained on another kind of MusicGen than this base ({', '.join(changed)}); "
            f"use the base it was trained on ('{adapter_base(adapter)}') as --base_model"
        )


def check_adapter_fits(model: PeftModel, name: str, adapter: str) -> None:
    """Refuse an adapter whose weights do not cover the LoRA layers it creates on this base, or hold layers this base
    lacks (PEFT only warns: a mono adapter on a stereo base leaves codebooks 5-8 unadapted).

    Raises:
        UserError: naming a layer and the base the adapter records.
    """
    state = get_peft_model_state_dict(model, adapter_name=name, save_embedding_layers=False)
    expected = {key for key in state if "lora_" in key}
    saved = {key for key in load_peft_weights(adapter, device="cpu") if "lora_" in key}
    missing, extra = sorted(expected - saved), sorted(saved - expected)
    if missing or extra:
        example = (
            f"it has no weights for {len(missing)} of its layers on this base, e.g. {missing[0]}"
            if missing
            else f"it holds {len(extra)} layers this base lacks, e.g. {extra[0]}"
        )
        raise UserError(
            f"adapter '{adapter}' does not fit this base model: {example} (it was trained on another kind of "
            f"MusicGen: mono, stereo or melody, another size); use the base it was trained on "
            f"('{adapter_base(adapter)}') as --base_model"
        )


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
