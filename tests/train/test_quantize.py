"""quantize_base int8 / nf4 on this CPU (bitsandbytes' CPU backend): the decoder's frozen linear layers really are
8/4-bit, LoRA trains on them (loss falls), a run resumes exactly, the card names the quantization, and the adapter
applied to the UNQUANTIZED base gives logits close to those of the quantized model it was trained on. Also the
8-bit and paged optimizers through Trainer's ``optim``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import transformers.modeling_utils as modeling_utils
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForTextToWaveform

from finetune_musicgen import main
from musicgen_lora.config.arguments import ModelArguments
from musicgen_lora.models.loading import load_model_and_processor
from musicgen_lora.models.quantize import quantized_linear_layers, quantized_loading

from ..conftest import base_argv

bnb = pytest.importorskip("bitsandbytes", reason="bitsandbytes is an optional extra (pip install .[quant])")

pytestmark = pytest.mark.slow

# The adapter on the unquantized base vs the quantized model it trained on: the relative difference of the logits
# (Frobenius norm of the difference / norm of the logits). Quantization is the whole difference; measured on the
# tiny model after 6 steps: 0.0031 (int8) and 0.0045 (nf4); the bounds leave about 3x room for other seeds and builds.
TOLERANCE = {"int8": 0.01, "nf4": 0.015}
STEPS = 6


def quick_argv(model: Path, corpus: Path, out: Path, cache: Path, kind: str, *extra: str) -> list[str]:
    return base_argv(model, corpus, out, cache) + [
        "--quantize_base", kind, "--bf16", "true", "--max_steps", str(STEPS), "--per_device_train_batch_size", "4",
        "--max_train_samples", "4", "--learning_rate", "3e-3", "--lora_dropout", "0", "--logging_steps", "1",
        "--max_duration_in_seconds", "1", "--lr_scheduler_type", "constant", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module", params=["nf4", "int8"])
def quantized_run(request, tiny_model_dir, corpus_dir, data_cache_dir, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp(f"quantized-{request.param}") / "run"
    argv = quick_argv(tiny_model_dir, corpus_dir, out, data_cache_dir, request.param)
    result = main(argv)
    return {"kind": request.param, "argv": argv, **result}


def decoder_linear_bytes(model: torch.nn.Module) -> int:
    """Bytes of the decoder layers' linear weights (quantized storage and its scales included)."""
    total = 0
    for name, module in model.named_modules():
        if ".layers." in name and name.rsplit(".", 1)[-1] in ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"):
            weight = module.weight
            total += weight.numel() * weight.element_size()
            state = getattr(weight, "quant_state", None)
            if state is not None:  # nf4: absmax (double-quantized) and its scales
                total += state.absmax.numel() * state.absmax.element_size()
    return total


def test_the_decoder_layers_are_really_4_or_8_bit_and_the_rest_is_not(quantized_run, tiny_model_dir):
    kind, model = quantized_run["kind"], quantized_run["model"].get_base_model()
    layers = quantized_linear_layers(model)
    decoder_linears = [n for n, _ in model.named_modules() if ".layers." in n and n.endswith(("_proj", "fc1", "fc2"))
                       and "lora" not in n and "base_layer" not in n]  # fmt: skip
    assert decoder_linears and all(any(q.startswith(name) for q in layers) for name in decoder_linears)
    assert set(layers.values()) == {kind}
    assert not [n for n in layers if n.startswith(("text_encoder", "audio_encoder", "enc_to_dec_proj"))]
    assert not [n for n in layers if "lm_heads" in n or "embed_tokens" in n]
    expected_dtype = torch.uint8 if kind == "nf4" else torch.int8
    weights = [m.weight for n, m in model.named_modules() if n in layers]
    assert {w.dtype for w in weights} == {expected_dtype}
    assert {p.dtype for p in model.audio_encoder.parameters()} == {torch.float32}  # EnCodec untouched
    # memory: against the same layers in bf16 (what bf16 training holds without quantization)
    bf16, _ = load_model_and_processor(ModelArguments(model_name_or_path=str(tiny_model_dir)), dtype=torch.bfloat16)
    ratio = decoder_linear_bytes(model) / decoder_linear_bytes(bf16)
    assert ratio <= (0.30 if kind == "nf4" else 0.55), ratio  # 4 bits + scales = 0.27; 8 bits = 0.5


@pytest.mark.parametrize("kind", ["nf4", "int8"])
def test_a_quantized_load_reads_the_checkpoint_and_gives_the_mapped_loads_weights(kind, tiny_model_dir, monkeypatch):
    # a quantized load reads the fp32 checkpoint (safetensors' pread backend) instead of memory-mapping it, whose
    # pages would stay resident after quantizing (bench/RESULTS.md, *Memory planner*); the weights are the same
    mapped = AutoModelForTextToWaveform.from_pretrained(tiny_model_dir, **quantized_loading(kind, None))
    backends = []
    safe_open = modeling_utils.safe_open

    def recording(*args, **kwargs):
        backends.append(kwargs.get("backend"))
        return safe_open(*args, **kwargs)

    monkeypatch.setattr(modeling_utils, "safe_open", recording)
    read, _ = load_model_and_processor(ModelArguments(model_name_or_path=str(tiny_model_dir), quantize_base=kind))
    # every tensor is read (pread); the one call without a backend is transformers' dtype probe, which reads only the
    # header onto the meta device (load_state_dict(map_location="meta")) and closes the file
    assert "pread" in backends and set(backends) <= {"pread", None}, backends
    assert modeling_utils.safe_open is recording  # put back after the load
    assert quantized_linear_layers(read) == quantized_linear_layers(mapped) != {}
    expected = mapped.state_dict()
    assert read.state_dict().keys() == expected.keys()
    for name, tensor in read.state_dict().items():
        assert tensor.dtype == expected[name].dtype, name
        torch.testing.assert_close(tensor, expected[name], rtol=0, atol=0, msg=name)
    backends.clear()  # an unquantized fp32 load keeps the mapping (its weights are the mapped pages)
    load_model_and_processor(ModelArguments(model_name_or_path=str(tiny_model_dir)))
    assert "mmap" in backends and "pread" not in backends, backends


def test_lora_trains_on_the_quantized_base(quantized_run):
    state = json.loads((Path(quantized_run["output_dir"]) / "trainer_state.json").read_text())
    losses = [r["loss"] for r in state["log_history"] if "loss" in r]
    assert len(losses) == STEPS and losses[-1] < losses[0] - 0.05, losses
    adapter = load_file(Path(quantized_run["output_dir"]) / "adapter_model.safetensors")
    assert adapter and all("lora_" in key for key in adapter)
    assert all(t.dtype == torch.float32 for t in adapter.values())  # the adapters train in full precision


def test_the_card_names_the_quantization_and_how_to_load(quantized_run):
    card = (Path(quantized_run["output_dir"]) / "README.md").read_text()
    assert f"quantize_base {quantized_run['kind']}" in card
    assert "unquantized base" in card


def test_the_adapter_on_the_unquantized_base_gives_the_quantized_models_logits(quantized_run, tiny_model_dir):
    kind, trained = quantized_run["kind"], quantized_run["model"]
    base = AutoModelForTextToWaveform.from_pretrained(tiny_model_dir)  # fp32, not quantized
    unquantized = PeftModel.from_pretrained(base, quantized_run["output_dir"]).eval()
    assert not quantized_linear_layers(unquantized)
    trained.eval()
    torch.manual_seed(0)
    inputs = {
        "input_ids": torch.randint(0, 50, (2, 6)),
        "attention_mask": torch.ones(2, 6, dtype=torch.long),
        "decoder_input_ids": torch.randint(0, 64, (2 * 4, 20)),
    }
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        quantized_logits = trained(**inputs).logits.float()
    with torch.no_grad():
        plain_logits = unquantized(**inputs).logits.float()
    difference = (quantized_logits - plain_logits).norm() / plain_logits.norm()
    print(f"{kind}: relative logit difference {difference:.4f}")
    assert difference < TOLERANCE[kind], float(difference)
    with unquantized.disable_adapter(), torch.no_grad():
        base_logits = unquantized(**inputs).logits.float()
    # what the adapter learned moves the logits more than quantization does: it is the adapter that carries over
    effect = (plain_logits - base_logits).norm() / base_logits.norm()
    print(f"{kind}: the adapter's own effect {effect:.4f}")
    assert effect > 2 * difference, (float(effect), float(difference))


def test_a_quantized_run_resumes_exactly(quantized_run, tiny_model_dir, corpus_dir, data_cache_dir, tmp_path):
    if quantized_run["kind"] != "nf4":
        pytest.skip("one quantization kind is enough for resume (the checkpoint holds only the fp32 adapter)")
    out = tmp_path / "run"
    argv = quick_argv(tiny_model_dir, corpus_dir, out, data_cache_dir, "nf4", "--save_strategy", "steps",
                      "--save_steps", "3", "--max_steps", "3")  # fmt: skip
    main(argv)
    main(argv[:-2] + ["--max_steps", str(STEPS), "--resume_from_checkpoint", "true"])
    resumed = load_file(out / "adapter_model.safetensors")
    straight = load_file(Path(quantized_run["output_dir"]) / "adapter_model.safetensors")
    assert resumed.keys() == straight.keys()
    for key in straight:
        torch.testing.assert_close(resumed[key], straight[key], rtol=0, atol=0, msg=key)


@pytest.mark.parametrize("optim", ["adamw_bnb_8bit", "paged_adamw_8bit"])
def test_8bit_and_paged_optimizers_train(optim, tiny_model_dir, corpus_dir, data_cache_dir, tmp_path):
    argv = base_argv(tiny_model_dir, corpus_dir, tmp_path / "run", data_cache_dir) + [
        "--optim", optim, "--max_steps", str(STEPS), "--per_device_train_batch_size", "4", "--max_train_samples", "4",
        "--learning_rate", "3e-3", "--lora_dropout", "0", "--logging_steps", "1", "--max_duration_in_seconds", "1",
    ]  # fmt: skip
    result = main(argv)
    state = json.loads((tmp_path / "run" / "trainer_state.json").read_text())
    losses = [r["loss"] for r in state["log_history"] if "loss" in r]
    assert losses[-1] < losses[0] - 0.05, losses
    assert result["train"]["train_loss"] > 0
