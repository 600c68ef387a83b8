"""Cheaper training layers: packed-bits LoRA dropout, no fp32 round trip under autocast, decoder dropout."""

from __future__ import annotations

import math

import pytest
import torch
from peft import LoraConfig, get_peft_model

from musicgen_lora.compat import lora_layers
from musicgen_lora.config.parsing import parse_config
from musicgen_lora.errors import UserError
from musicgen_lora.models.loading import load_model_and_processor
from musicgen_lora.train.lora import add_trainable_parts
from musicgen_lora.train.lora_speed import PackedBitsDropout, inputs_kept_in_autocast_dtype

from ..conftest import base_argv


@pytest.mark.parametrize("p", [0.05, 0.3])
def test_packed_bits_dropout_drops_the_right_fraction_and_keeps_the_expectation(p):
    torch.manual_seed(0)
    x = torch.rand(1000, 1000) + 0.5
    dropout = PackedBitsDropout(p).train()
    torch.manual_seed(1)
    out = dropout(x)
    dropped = (out == 0).double().mean().item()
    sigma = math.sqrt(p * (1 - p) / x.numel())
    assert abs(dropped - p) < 5 * sigma + 1 / 65536  # p is rounded to 1/65536
    kept = out != 0
    torch.testing.assert_close(out[kept], x[kept] * dropout.scale)
    assert abs(out.double().mean().item() / x.double().mean().item() - 1) < 0.01  # unbiased
    # masks are independent from call to call and reproducible from the seed, like nn.Dropout's
    second = dropout(x)
    agreement = ((out == 0) == (second == 0)).double().mean().item()
    assert abs(agreement - (p * p + (1 - p) * (1 - p))) < 0.01
    torch.manual_seed(1)
    torch.testing.assert_close(dropout(x), out, rtol=0, atol=0)
    # rows of the mask are not copies of each other (each element has its own 16 bits)
    assert not torch.equal(out[0] == 0, out[1] == 0)


def test_packed_bits_dropout_is_identity_in_eval_mode_and_keeps_dtype_and_gradients():
    dropout = PackedBitsDropout(0.1)
    x = torch.randn(3, 7, 5, dtype=torch.bfloat16, requires_grad=True)
    assert dropout.eval()(x) is x
    out = dropout.train()(x)
    assert out.dtype == torch.bfloat16 and out.shape == x.shape
    out.sum().backward()
    expected = torch.where(
        out != 0, torch.tensor(dropout.scale, dtype=torch.bfloat16), torch.tensor(0.0, dtype=torch.bfloat16)
    )
    torch.testing.assert_close(x.grad, expected)


def _lora_linear(dropout: float) -> torch.nn.Module:
    torch.manual_seed(0)
    base = torch.nn.Sequential(torch.nn.Linear(64, 64)).to(torch.bfloat16)
    model = get_peft_model(base, LoraConfig(r=4, target_modules=["0"], lora_dropout=dropout, init_lora_weights=False))
    return model


def test_inputs_kept_in_autocast_dtype_gives_the_same_step_under_autocast_and_restores_the_cast():
    model = _lora_linear(dropout=0.0)
    layers = lora_layers(model)
    assert len(layers) == 1
    x = torch.randn(8, 64, dtype=torch.bfloat16)

    def grads(keep_dtype: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        model.zero_grad(set_to_none=True)
        with inputs_kept_in_autocast_dtype(layers, active=keep_dtype), torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x)
            out.float().square().mean().backward()
        return out.detach(), [p.grad.clone() for p in model.parameters() if p.requires_grad]

    out_cast, grads_cast = grads(keep_dtype=False)
    out_kept, grads_kept = grads(keep_dtype=True)
    torch.testing.assert_close(out_kept, out_cast, rtol=0, atol=0)
    for kept, cast in zip(grads_kept, grads_cast, strict=False):
        torch.testing.assert_close(kept, cast, rtol=0, atol=0)
    # outside the block PEFT casts again, so the fp32 adapter runs on a bf16 input without autocast (generation)
    assert layers[0].cast_input_dtype_enabled
    with torch.no_grad():
        assert model(x).dtype == torch.bfloat16
    with pytest.raises(RuntimeError), inputs_kept_in_autocast_dtype(layers), torch.no_grad():
        model(x)  # bf16 input, fp32 adapter, no autocast: exactly why the cast is only dropped under autocast


def test_lora_training_uses_packed_bits_dropout_and_checkpointing_replays_its_masks(tiny_model_dir, tmp_path):
    argv = base_argv(tiny_model_dir, tmp_path, tmp_path / "out", tmp_path / "cache") + ["--lora_dropout", "0.3"]
    parsed = parse_config(argv)
    model, _ = load_model_and_processor(parsed.model)
    model = add_trainable_parts(model, parsed.lora)
    dropouts = [d for layer in lora_layers(model) for d in layer.lora_dropout.values()]
    assert dropouts and all(isinstance(d, PackedBitsDropout) and d.p == 0.3 for d in dropouts)
    decoder = model.get_base_model().config.decoder
    inputs = {
        "input_ids": torch.randint(0, 100, (2, 5)),
        "attention_mask": torch.ones(2, 5, dtype=torch.long),
        "decoder_input_ids": torch.randint(0, decoder.vocab_size, (2 * decoder.num_codebooks, 12)),
    }

    def step(checkpointing: bool, seed: int = 3) -> list[torch.Tensor]:
        base = model.get_base_model()
        if checkpointing:
            base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        else:
            base.gradient_checkpointing_disable()
        model.train()
        model.zero_grad(set_to_none=True)
        torch.manual_seed(seed)
        model(**inputs).logits.float().square().mean().backward()
        return [p.grad.clone() for p in model.parameters() if p.requires_grad]

    plain, recomputed = step(checkpointing=False), step(checkpointing=True)
    for a, b in zip(plain, recomputed, strict=False):
        torch.testing.assert_close(a, b)
    # and the masks do matter: another seed gives other gradients
    assert not all(torch.allclose(a, b) for a, b in zip(plain, step(checkpointing=False, seed=4), strict=False))


def test_decoder_dropout_keeps_the_checkpoints_by_default_and_can_be_set(tiny_model_dir, tmp_path):
    common = base_argv(tiny_model_dir, tmp_path, tmp_path / "out", tmp_path / "cache") + ["--lora_dropout", "0"]
    decoder = None
    for value, deterministic in ((None, False), ("0", True), ("0.2", False)):
        argv = common + (["--decoder_dropout", value] if value else [])
        parsed = parse_config(argv)
        model, _ = load_model_and_processor(parsed.model)
        assert model.config.decoder.dropout == 0.1  # the tiny model's config, like the Hub checkpoints'
        model = add_trainable_parts(model, parsed.lora).train()
        decoder = model.get_base_model().decoder
        expected = 0.1 if value is None else float(value)
        assert decoder.config.dropout == expected
        assert {layer.dropout for layer in decoder.model.decoder.layers} == {expected}
        codes = torch.randint(0, decoder.config.vocab_size, (decoder.config.num_codebooks, 9))
        with torch.no_grad():
            first, second = decoder(input_ids=codes).logits, decoder(input_ids=codes).logits
        assert torch.equal(first, second) is deterministic
    with pytest.raises(UserError, match="decoder_dropout"):
        parse_config(common + ["--decoder_dropout", "1"])
