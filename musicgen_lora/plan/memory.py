"""The memory planner: the peak memory of training a config, predicted before anything is loaded.

The formula (bytes; ``a`` = bytes per activation: 2 under bf16/fp16 autocast, 4 in fp32; ``w`` = bytes per frozen
weight: the frozen base's dtype, ``base_model_dtype`` 'auto' following the precision; ``P`` = decoder positions of a
step, ``batch x (50 x seconds + codebooks per channel - 1)``, melody adding the text and chroma it prepends)::

    peak = runtime + k_w x frozen_weights + trainable x (4 + 4 + optimizer state)
           + k_a x activations + k_l x lora_dropout + k_r x residual_dropout + int8_inputs + logits

- **runtime**: what the process holds before any model, on a CPU: the interpreter, torch, transformers, peft,
  datasets (``RUNTIME_CPU``, measured: the process peak of training the tiny model); on a GPU nothing (the figure
  is ``torch.cuda.max_memory_allocated``; the CUDA context, about 0.5 GB, shows only in nvidia-smi).
- **frozen_weights**: EnCodec in fp32; the T5 text encoder in ``w``; the decoder's layer weights in ``w``, or with
  ``quantize_base`` at bitsandbytes' bytes per weight (nf4 0.52, int8 1: ``models.quantize.BYTES_PER_WEIGHT``); its
  embeddings, heads, norms, positions and projections in ``w``. Full fine-tuning: the decoder is trainable instead.
- **trainable**: LoRA's A and B of every targeted module (``r x (in + out)``, fp32; the default targets of small:
  10.6 M), their fp32 gradients and the optimizer's state (``OPTIMIZER_STATE_BYTES``: AdamW 8, 8-bit AdamW 2, ...).
- **activations**: per position and layer, what the backward keeps of the layer: ``(ACT_PER_HIDDEN x hidden +
  ACT_PER_FFN x ffn) x a`` (layer-norm inputs, q, k, v, attention outputs, the feed-forward's; melody layers have
  no cross-attention). With gradient checkpointing, each layer's input (``hidden x a``) plus one layer's set.
  Eager attention on a GPU adds ``2 x heads x steps`` per position (scores and probabilities); on the CPU SDPA keeps
  them too (measured: eager and SDPA peak alike), so the term is in the fit there.
- **lora_dropout** (when ``lora_dropout > 0``): the dropped copies of LoRA's inputs, ``(7 x hidden + ffn) x a`` per
  position and layer; **residual_dropout** (``decoder_dropout``, 0.1 in the checkpoints): ``3 x hidden x a``.
- **int8_inputs** (``quantize_base: int8``): bitsandbytes' int8 matmul keeps each int8 layer's input for its
  backward (``ctx.A`` of ``MatMul8bitFp`` on the CPU; ``MatMul8bitLt`` keeps it on a GPU too), even though the frozen
  weight needs no gradient, where a frozen ``nn.Linear`` (and bitsandbytes' nf4 matmul) keeps none. The inputs that
  nothing else keeps are the three layer norms' outputs (self-attention's q/k/v, cross-attention's q, fc1) and the
  GELU's output (fc2): ``(3 x hidden + ffn) x a`` per position and layer (melody: ``2 x hidden + ffn``, no cross-
  attention), one layer's set with checkpointing. Counted, not fitted (multiplier 1): walking the autograd graph of a
  4-layer decoder of musicgen-small's sizes (fp32, batch 2 x 503 steps, LoRA defaults) found int8 keeping 110.1 MiB
  more than the unquantized base, exactly 7 x hidden x 4 bytes per position and layer, and nf4 keeping nothing more.
  Without this term the int8 rows were the planner's misses (musicgen-small fp32 int8, batch 2 x 10 s: 8.90 GiB
  measured, 7.58 predicted, -14.8 %).
- No term for the checkpoint file: a quantized or half-precision load reads it tensor by tensor instead of
  memory-mapping it (``models.loading``), so its fp32 pages do not stay resident (they did while a quantized load
  mapped it: 1.75 GiB of musicgen-small's file after quantizing, and the int8 row came out 20.8 % above this formula
  with a term for it). Measured without the mapping, musicgen-small fp32 5 s: int8 3.68 GiB, nf4 3.41 GiB, within
  2 % of the formula without such a term (bench/RESULTS.md, *Memory planner*). An unquantized fp32 load keeps the
  mapping, whose pages are the weights themselves (counted in frozen_weights).
- **logits**: ``P x codebooks x vocab x (a + 8)``: the heads' output, its fp32 copy and the log-probs the
  cross-entropy keeps.

The multipliers ``k`` (``CALIBRATION``) are fitted by least squares to the measured peaks of random models of the
real sizes kept in ``bench/memory_measurements.json`` (``python -m musicgen_lora.bench.memory``; the fit:
``musicgen_lora.bench.memory.fit_calibration``); ``k_w`` above 1 on the CPU is what loading leaves in the process
beyond the weights. The tests hold every prediction to within 15 % of those measurements.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config.arguments import ARGUMENT_GROUPS, DEFAULT_LORA_TARGETS
from ..config.parsing import load_json_config
from ..errors import UserError
from ..models.quantize import BYTES_PER_WEIGHT
from .architecture import Architecture, architecture_of, chroma_frames

GIB = 2**30
FRAME_RATE = 50  # MusicGen's codes: 50 frames per second of audio
DEFAULT_TEXT_TOKENS = 32  # a caption of a dozen words, with the trigger word

# Calibrated on bench/memory_measurements.json (see the module docstring).
RUNTIME_CPU = 0.60 * GIB
ACT_PER_HIDDEN = 10  # self-attention: LN input, q, k, v, output (5 d); cross: LN input, q, output (3 d); FFN (2 d)
ACT_PER_FFN = 2  # fc1's output and GELU's output
# Each term's multiplier, fitted (least squares) to the measurements: python -m musicgen_lora.bench.memory --fit.
# frozen_weights > 1 on the CPU: what loading leaves in the allocator beyond the weights themselves.
_CPU_FIT = {"frozen_weights": 1.402, "activations": 0.532, "lora_dropout": 2.976, "residual_dropout": 4.784}
CALIBRATION: dict[str, dict[str, float]] = {
    "cpu": _CPU_FIT,
    # Not measured on a GPU yet: the activation terms count tensors the backward keeps on any device, so the CPU's
    # multipliers are used; the frozen weights' CPU excess (what loading leaves in the allocator) is not.
    "cuda": {**_CPU_FIT, "frozen_weights": 1.0},
}

# Optimizer state per trainable parameter (bytes), by Trainer ``optim`` (anything unlisted: AdamW's 8).
OPTIMIZER_STATE_BYTES = {
    "sgd": 0, "adagrad": 4, "rmsprop": 4, "adafactor": 0.1, "lion_32bit": 4, "paged_lion_32bit": 4, "lion_8bit": 1,
    "paged_lion_8bit": 1, "adamw_bnb_8bit": 2, "adamw_8bit": 2, "paged_adamw_8bit": 2, "ademamix_8bit": 3,
    "paged_ademamix_8bit": 3, "ademamix": 12, "paged_ademamix_32bit": 12, "rmsprop_bnb_8bit": 1,
    "rmsprop_bnb": 4, "rmsprop_bnb_32bit": 4, "adamw_torch_8bit": 2, "adamw_torch_4bit": 1,
}  # fmt: skip


@dataclass(frozen=True)
class Settings:
    """The options that memory depends on, read from a config (missing keys: the options' defaults)."""

    model: str
    batch: int
    seconds: float
    precision: str  # fp32 | bf16 | fp16 (what the step computes in)
    base_bytes: int  # bytes per frozen base weight
    quantize: str | None
    checkpointing: bool
    attn: str
    optim: str
    use_lora: bool
    lora_r: int
    targets: list[str]
    train_text_encoder: bool
    lora_dropout: float = 0.05
    decoder_dropout: float = 0.1  # None in a config: the checkpoint's, 0.1 in every published MusicGen
    text_tokens: int = DEFAULT_TEXT_TOKENS


@dataclass
class MemoryPlan:
    """A prediction: the peak and its parts (bytes), for the settings it was made for."""

    settings: Settings
    device: str
    parts: dict[str, int] = field(default_factory=dict)

    @property
    def peak_bytes(self) -> int:
        return int(sum(self.parts.values()))

    @property
    def peak_memory_gib(self) -> float:
        return self.peak_bytes / GIB

    def fits(self, memory_bytes: float) -> bool:
        return self.peak_bytes <= memory_bytes

    def as_json(self) -> dict[str, Any]:
        """``{"peak_memory_gib": ..., "parts": {name: GiB}, "device": ..., "settings": {...}}``."""
        return {
            "peak_memory_gib": round(self.peak_memory_gib, 3),
            "parts": {name: round(value / GIB, 3) for name, value in self.parts.items()},
            "device": self.device,
            "settings": dataclasses.asdict(self.settings),
        }


@functools.cache
def _defaults() -> dict[str, Any]:
    """Every option's default, as a config without that key gets it (read-only: callers copy it)."""
    values: dict[str, Any] = {}
    for group in ARGUMENT_GROUPS:
        for f in dataclasses.fields(group):
            if f.default is not dataclasses.MISSING:
                values[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                values[f.name] = f.default_factory()
    return values


def _as_bool(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).lower() in ("true", "1", "yes")


def settings_of(config: dict[str, Any], device: str, text_tokens: int = DEFAULT_TEXT_TOKENS) -> Settings:
    """The memory-relevant settings of a config (JSON keys as in a config file, values as JSON or as text)."""
    values = {**_defaults(), **config}
    if not values.get("model_name_or_path"):
        raise UserError("the config names no model_name_or_path; set it (e.g. facebook/musicgen-small)")
    bf16, fp16 = _as_bool(values.get("bf16")), _as_bool(values.get("fp16"))
    precision = "bf16" if bf16 else "fp16" if fp16 and device == "cuda" else "fp32"  # fp16 trains in fp32 on a CPU
    dtype = str(values.get("base_model_dtype", "auto"))
    base_bytes = {"float32": 4, "bfloat16": 2, "float16": 2}.get(dtype, 4 if precision == "fp32" else 2)
    targets = values.get("lora_target_modules") or list(DEFAULT_LORA_TARGETS)
    if isinstance(targets, str):
        targets = targets.split()
    quantize = values.get("quantize_base")
    return Settings(
        model=str(values["model_name_or_path"]),
        batch=int(values.get("per_device_train_batch_size", 8)),
        seconds=float(values.get("max_duration_in_seconds", 30.0)),
        precision=precision,
        base_bytes=base_bytes,
        quantize=None if quantize in (None, "null", "none", "") else str(quantize),
        checkpointing=_as_bool(values.get("gradient_checkpointing")),
        attn=str(values.get("attn_implementation", "sdpa")),
        optim=str(getattr(values.get("optim"), "value", values.get("optim"))),
        use_lora=_as_bool(values.get("use_lora", True)),
        lora_r=int(values.get("lora_r", 16)),
        targets=list(targets),
        train_text_encoder=_as_bool(values.get("train_text_encoder")),
        lora_dropout=float(values.get("lora_dropout", 0.05)),
        decoder_dropout=0.1
        if values.get("decoder_dropout") in (None, "None", "null")
        else float(values["decoder_dropout"]),
        text_tokens=text_tokens,
    )


def lora_params(arch: Architecture, settings: Settings) -> int:
    """Trainable LoRA parameters: r x (in + out) per adapted module (the text encoder's q, k, v, o too with
    train_text_encoder)."""
    total = sum(
        count * settings.lora_r * (fan_in + fan_out) for count, fan_in, fan_out in arch.lora_targets(settings.targets)
    )
    if settings.train_text_encoder:
        inner = arch.text_heads * arch.text_d_kv
        total += arch.text_layers * 4 * settings.lora_r * (arch.text_d + inner)
    return total


def positions(arch: Architecture, settings: Settings) -> int:
    """Decoder positions of one step: batch x (frames + the delay pattern's extra steps [+ melody's prefix])."""
    steps = int(settings.seconds * FRAME_RATE) + arch.delays
    if arch.melody:  # text and chroma are prepended to the decoder's input
        steps += settings.text_tokens + chroma_frames(settings.seconds)
    return settings.batch * steps


def raw_parts(arch: Architecture, settings: Settings, device: str) -> dict[str, float]:
    """The planner's terms before calibration (bytes): see the module docstring."""
    w, a = settings.base_bytes, 4 if settings.precision == "fp32" else 2
    parts: dict[str, float] = {"runtime": RUNTIME_CPU if device == "cpu" else 0.0}
    text = arch.text_encoder_params()
    if settings.use_lora:
        linear = BYTES_PER_WEIGHT[settings.quantize] if settings.quantize else w
        frozen = 4 * arch.codec_tensors + w * text + linear * arch.decoder_linear_params()
        frozen += w * arch.decoder_other_params()
        trainable = lora_params(arch, settings)
        parts["frozen_weights"] = frozen
        parts["trainable_weights"] = 4 * trainable
    else:  # full fine-tuning: the decoder trains in fp32 (the text encoder too with train_text_encoder)
        decoder = arch.decoder_linear_params() + arch.decoder_other_params()
        parts["frozen_weights"] = 4 * arch.codec_tensors + (0 if settings.train_text_encoder else w * text)
        trainable = decoder + (text if settings.train_text_encoder else 0)
        parts["trainable_weights"] = 4 * trainable
    parts["gradients"] = 4 * trainable
    parts["optimizer_states"] = OPTIMIZER_STATE_BYTES.get(settings.optim, 8) * trainable
    p = positions(arch, settings)
    # per position and layer, in activation elements: what the backward keeps of the layer itself, LoRA's dropped
    # inputs (q, k, v, out of self-attention; q, out of cross-attention; fc1's d and fc2's ffn), residual dropout
    base = ACT_PER_HIDDEN * arch.hidden + ACT_PER_FFN * arch.ffn - (7 * arch.hidden if arch.melody else 0)
    lora_dropout = (7 - (2 if arch.melody else 0)) * arch.hidden + arch.ffn if settings.lora_dropout > 0 else 0
    residual_dropout = 3 * arch.hidden if settings.decoder_dropout > 0 else 0
    if settings.attn == "eager" and device == "cuda":  # (the CPU's SDPA kernel keeps the scores too: measured)
        base += 2 * arch.heads * (p // settings.batch)
    layers = 1 if settings.checkpointing else arch.layers  # checkpointing: one layer's set while it is recomputed
    kept_inputs = arch.layers * arch.hidden * p * a if settings.checkpointing else 0.0
    parts["activations"] = layers * base * p * a + kept_inputs
    parts["lora_dropout"] = layers * lora_dropout * p * a
    parts["residual_dropout"] = layers * residual_dropout * p * a
    int8_inputs = (3 - (1 if arch.melody else 0)) * arch.hidden + arch.ffn if settings.quantize == "int8" else 0
    parts["int8_inputs"] = layers * int8_inputs * p * a if settings.use_lora else 0.0
    parts["logits"] = p * arch.codebooks * arch.vocab * (a + 8)
    return parts


def plan_settings(arch: Architecture, settings: Settings, device: str) -> MemoryPlan:
    """The plan of ``settings`` on ``arch``: the raw terms times their calibration (see the module docstring)."""
    calibration = CALIBRATION[device]
    parts = {name: value * calibration.get(name, 1.0) for name, value in raw_parts(arch, settings, device).items()}
    return MemoryPlan(settings, device, {name: int(value) for name, value in parts.items()})


def read_config(config: str | Path | dict[str, Any]) -> dict[str, Any]:
    """A config as a dict: given as one, or a JSON file's path (errors as one-line UserErrors)."""
    return config if isinstance(config, dict) else load_json_config(config)


def plan_memory(
    config: str | Path | dict[str, Any] | Any, device: str = "cuda", text_tokens: int = DEFAULT_TEXT_TOKENS
) -> MemoryPlan:
    """Predict the peak memory of training ``config`` on ``device`` ('cuda': torch.cuda.max_memory_allocated;
    'cpu': the whole process' peak resident memory), before anything is loaded.

    Args:
        config: a config dict (keys as in a JSON config file), the path of a JSON config, or a ParsedConfig.
        text_tokens: caption length in tokens (T5), which melody models prepend to the decoder's input.

    Returns:
        A :class:`MemoryPlan` (``.peak_bytes``, ``.parts``, ``.as_json()``).

    Raises:
        UserError: the model is neither a local MusicGen folder nor a published one, or the file is not a config.
    """
    if device not in ("cuda", "cpu"):
        raise UserError(f"device must be 'cuda' or 'cpu', got {device!r}")
    if hasattr(config, "requested"):  # a ParsedConfig: what the user asked for
        config = config.requested
    settings = settings_of(read_config(config), device, text_tokens)
    return plan_settings(architecture_of(settings.model), settings, device)
