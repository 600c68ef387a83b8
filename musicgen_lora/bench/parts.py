"""The benchmark's measurements besides the training cases: AdamW's step alone (foreach vs fused), the padding waste
of the Trainer's batches (random order vs ``group_by_length``), and the throughput of data preparation (``python -m
musicgen_lora.prepare``) at growing corpus sizes with its cache-hit rerun."""

from __future__ import annotations

import contextlib
import io
import math
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config.arguments import LoraArguments
from ..config.parsing import parse_config
from ..demo.synth import synthesize_corpus
from ..demo.tiny import build_tiny_musicgen
from ..demo.tiny_configs import ARCHITECTURES
from ..models.loading import ready_for_training
from ..prepare.cli import main as prepare_main
from ..train.lora import add_trainable_parts
from ..train.run import build_trainer
from .cases import FRAME_RATE, Case, case_argv, synthetic_codes


def optimizer_bench(architecture: str, steps: int) -> dict[str, float]:
    """Seconds per AdamW step on the LoRA parameters of ``architecture`` (default targets, r=16): foreach vs fused."""
    with torch.device("meta"):  # only the adapter's shapes are needed: no memory, no init
        model, _ = build_tiny_musicgen(architecture=architecture, fit_codebooks=False)
    ready_for_training(model)
    peft_model = add_trainable_parts(model, LoraArguments())
    shapes = [p.shape for p in peft_model.parameters() if p.requires_grad]
    result: dict[str, float] = {"params": float(sum(math.prod(s) for s in shapes))}
    for name, kwargs in (("adamw_torch", {"foreach": True}), ("adamw_torch_fused", {"fused": True})):
        params = [torch.nn.Parameter(torch.randn(s) * 0.01) for s in shapes]
        for p in params:
            p.grad = torch.randn_like(p) * 1e-3
        optimizer = torch.optim.AdamW(params, lr=1e-4, **kwargs)
        optimizer.step()  # creates the state
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            optimizer.step()
            times.append(time.perf_counter() - start)
        result[name] = statistics.median(times)
    return result


def padding_bench(clips: int, batch_size: int, seconds: float, workdir: Path) -> dict[str, float]:
    """Padded fraction of decoder positions in the Trainer's batches, random order vs group_by_length.

    Clip lengths are log-uniform between 1/15 and twice the window (2-60 s for 30 s windows: a folder of songs and
    excerpts); clips longer than the window become full windows, shorter ones are padded to the longest clip of their
    batch.
    """
    rng = np.random.default_rng(0)
    low, high = math.log(seconds / 15), math.log(2 * seconds)
    frames = [max(1, int(FRAME_RATE * s)) for s in np.exp(rng.uniform(low, high, clips))]
    dataset = None
    result = {}
    for strategy in ("random", "group_by_length"):
        model, processor = build_tiny_musicgen(fit_codebooks=False)  # the model does not matter: batches only
        ready_for_training(model)
        if dataset is None:
            decoder = model.config.decoder
            dataset = synthetic_codes(clips, frames, decoder.num_codebooks, decoder.vocab_size)
        case = Case("padding", architecture="tiny", batch_size=batch_size, seconds=seconds, precision="fp32")
        parsed = parse_config(case_argv(case, workdir) + ["--train_sampling_strategy", strategy])
        trainer = build_trainer(parsed, add_trainable_parts(model, parsed.lora), processor, dataset, None)
        padded = total = 0
        for batch in trainer.get_train_dataloader():
            mask = batch["decoder_attention_mask"]  # (bsz, steps): 0 where padded
            padded += int((mask == 0).sum())
            total += mask.numel()
        result[strategy] = padded / total
    return result


def preparation_bench(
    base_clips: int, seconds: float, multiples: list[int], workdir: Path, real_codec: bool = True
) -> dict[str, Any]:
    """``python -m musicgen_lora.prepare`` (in-process, through its main) on synthetic corpora of growing size.

    The model folder holds the real 32 kHz EnCodec (random weights: encoding costs the same) with a tiny decoder and
    text encoder, which preparation does not run. Captions get tempo and key (``add_metadata``).
    """
    model_dir = workdir / "prep-model"
    sizes = {**ARCHITECTURES["tiny"], "codec": ARCHITECTURES["small" if real_codec else "tiny"]["codec"]}
    model, processor = build_tiny_musicgen(architecture=sizes, fit_codebooks=False)
    model.save_pretrained(model_dir)
    processor.save_pretrained(model_dir)
    del model
    runs = []
    for multiple in multiples:
        corpus = workdir / f"corpus-{multiple}x"
        synthesize_corpus(corpus, clips=base_clips * multiple, seconds=seconds, seed=multiple)
        argv = [
            "--model_name_or_path",
            str(model_dir),
            "--dataset_name",
            str(corpus),
            "--output_dir",
            str(workdir / f"prep-{multiple}x"),
            "--data_cache_dir",
            str(workdir / f"cache-{multiple}x"),
            "--add_metadata",
            "true",
            "--report_to",
            "none",
            "--max_duration_in_seconds",
            "30",
        ]
        timings = []
        for _ in range(2):  # first run, then the cache-hit rerun
            start = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                prepare_main(argv)
            timings.append(time.perf_counter() - start)
        audio = base_clips * multiple * seconds
        runs.append(
            {
                "multiple": multiple,
                "audio_s": audio,
                "first_s": timings[0],
                "rerun_s": timings[1],
                "audio_s_per_s": audio / timings[0],
                "rerun_fraction": timings[1] / timings[0],
            }
        )
    return {"clips_1x": base_clips, "clip_seconds": seconds, "real_codec": real_codec, "runs": runs}
