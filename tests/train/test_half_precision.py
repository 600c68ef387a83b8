"""fp16: the frozen base is cast to half precision except what the model classes keep in fp32 (T5's ``wo``, EnCodec),
and those layers compute in fp32 even under autocast, so the text encoder's fp16 outputs stay finite and right."""

from __future__ import annotations

import copy
import threading
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from musicgen_lora.config.parsing import parse_config
from musicgen_lora.models import loading
from musicgen_lora.models.loading import load_model_and_processor, return_freed_memory
from musicgen_lora.train.lora import cast_frozen_base

from ..conftest import base_argv

FP16_MAX = torch.finfo(torch.float16).max


def _is_wo(name: str) -> bool:
    return name.startswith("text_encoder.") and ".DenseReluDense.wo." in name


@pytest.mark.parametrize("use_lora", [True, False])
def test_fp16_cast_keeps_t5_wo_and_encodec_fp32_exactly_as_loading_in_fp16(tiny_model_dir, tmp_path, use_lora):
    argv = base_argv(tiny_model_dir, tmp_path, tmp_path / "out", tmp_path / "cache") + ["--use_lora", str(use_lora)]
    parsed = parse_config(argv)
    cast, _ = load_model_and_processor(parsed.model)
    stored = {k: v.clone() for k, v in cast.state_dict().items()}
    parts = cast_frozen_base(cast, torch.float16, parsed.lora)
    dtypes = {name: p.dtype for name, p in cast.named_parameters()}
    assert any(_is_wo(name) for name in dtypes)  # the tiny T5 has the layers the real one keeps in fp32
    for name, dtype in dtypes.items():
        part = name.split(".")[0]
        expected = torch.float16 if part in parts and not _is_wo(name) else torch.float32
        assert dtype == expected, name
    for name, value in cast.state_dict().items():  # what stayed fp32 is bit for bit the stored weight
        if value.dtype == torch.float32:
            assert torch.equal(value, stored[name]), name
    if use_lora:  # the whole base is frozen: the same model as loading it in fp16 straight from the checkpoint
        direct, _ = load_model_and_processor(parsed.model, dtype=torch.float16)
        loaded = direct.state_dict()
        for name, value in cast.state_dict().items():
            assert loaded[name].dtype == value.dtype and torch.equal(loaded[name], value), name
    else:  # full fine-tuning: only the frozen text encoder is cast, the trained decoder stays fp32
        assert parts == ["text_encoder"]


def test_fp16_text_encoder_stays_finite_and_close_to_fp32_where_an_unprotected_layer_overflows(tiny_model_dir):
    model, _ = load_model_and_processor(parse_config(base_argv(tiny_model_dir, "d", "o", "c")).model)
    encoder = model.text_encoder
    tokens = AutoTokenizer.from_pretrained(tiny_model_dir)(
        ["lofi hip hop, mellow piano, 84 bpm", "techno"], return_tensors="pt", padding=True
    )
    wo_layers = [m for n, m in encoder.named_modules() if n.endswith("DenseReluDense.wo")]
    peaks: list[float] = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: peaks.append(float(out.abs().max()))) for m in wo_layers]
    with torch.no_grad():
        encoder(**tokens)
        # like the real T5 checkpoints: feed-forward outputs beyond fp16's range (here 4x its largest number)
        scale = 4 * FP16_MAX / max(peaks)
        for layer in wo_layers:
            layer.weight.mul_(scale)
        peaks.clear()
        reference = encoder(**tokens).last_hidden_state
    for hook in hooks:
        hook.remove()
    assert max(peaks) > FP16_MAX and torch.isfinite(reference).all()

    def error(half: torch.nn.Module, autocast: bool) -> float:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.float16, enabled=autocast):
            out = half(**tokens).last_hidden_state.float()
        return float((out - reference).abs().max() / reference.abs().max()) if torch.isfinite(out).all() else 1.0

    unprotected = copy.deepcopy(encoder).to(torch.float16)
    assert error(unprotected, autocast=False) > 0.1  # the overflowing layer in fp16: wrong (clamped or inf)
    cast_frozen_base(model, torch.float16, parse_config(base_argv(tiny_model_dir, "d", "o", "c")).lora)
    assert {p.dtype for layer in wo_layers for p in layer.parameters()} == {torch.float32}
    assert error(model.text_encoder, autocast=False) < 1e-2  # as when generating samples
    assert error(model.text_encoder, autocast=True) < 1e-2  # as in fp16 training (Trainer's autocast)


def _resident_mib() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads the resident size from /proc (Linux)")
def test_memory_a_loader_thread_freed_goes_back_to_the_system():
    """transformers' loader converts the checkpoint's tensors in threads; glibc keeps what a thread frees in that
    thread's heap, so the process stays as large as if it held the fp32 tensors (1.57 GiB after an nf4 load of
    musicgen-medium) until the memory is handed back."""
    kept: list[torch.Tensor] = []

    def load() -> None:  # read 400 x 1 MiB tensors, keep a small converted piece of each, free the rest
        pairs = [(torch.ones(2**18), torch.ones(1024)) for _ in range(400)]
        kept.extend(small for _, small in pairs)

    loader = threading.Thread(target=load)
    loader.start()
    loader.join()
    held = _resident_mib()
    if not return_freed_memory():
        pytest.skip("no glibc here (malloc_trim): nothing to hand back this way")
    assert held - _resident_mib() > 300  # of the 400 MiB freed


def test_half_precision_and_quantized_loads_hand_back_what_they_freed(tiny_model_dir, monkeypatch):
    calls = []
    monkeypatch.setattr(loading, "return_freed_memory", lambda: calls.append(1) or True)
    model_args = parse_config(base_argv(tiny_model_dir, "d", "o", "c")).model
    load_model_and_processor(model_args)  # fp32: the mapped file's pages are the weights, nothing was freed
    assert calls == []
    load_model_and_processor(model_args, dtype=torch.bfloat16)
    assert calls == [1]
