"""``musicgen-lora plan CONFIG [--device cuda|cpu] [--json] [--fit 12GB]``: the peak memory of training CONFIG,
predicted before anything is loaded (the formula: :mod:`musicgen_lora.plan.memory`)."""

from __future__ import annotations

import json
import sys
from typing import Any

from ..errors import CommandLineParser, exit_on_user_error
from .fit import largest_fits, parse_memory_size
from .memory import GIB, MemoryPlan, plan_memory

PROG = "musicgen-lora plan"


def describe(plan: MemoryPlan) -> str:
    """The plan as a few lines: the peak, then each part."""
    s = plan.settings
    target = "GPU memory (torch.cuda.max_memory_allocated)" if plan.device == "cuda" else "process peak RSS (CPU)"
    quantized = f", {s.quantize} base" if s.quantize else ""
    lines = [
        f"{s.model}: batch {s.batch} x {s.seconds:g} s, {s.precision}{quantized}, "
        f"checkpointing {'on' if s.checkpointing else 'off'}, optim {s.optim}, LoRA r {s.lora_r}"
        if s.use_lora
        else f"{s.model}: full fine-tuning, batch {s.batch} x {s.seconds:g} s, {s.precision}",
        f"predicted peak {target}: {plan.peak_memory_gib:.2f} GiB",
    ]
    lines += [f"  {name:<18} {value / GIB:7.2f} GiB" for name, value in plan.parts.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Print the plan (or, with ``--fit``, the largest batch x seconds that fits); returns it as JSON data."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = CommandLineParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("config", help="a training config (JSON), as finetune_musicgen.py takes it")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="where it would train")
    parser.add_argument("--json", action="store_true", help='print {"peak_memory_gib": ..., "parts": {...}}')
    parser.add_argument("--fit", help="a memory size (e.g. 12GB): the largest batch x seconds that fits it")
    with exit_on_user_error(argv):
        args = parser.parse_args(argv)
        plan = plan_memory(args.config, device=args.device)
        result = plan.as_json()
        if args.fit:
            memory = parse_memory_size(args.fit)
            fits = largest_fits(args.config, memory, args.device)
            result["fit"] = {
                "memory_gib": round(memory / GIB, 2),
                "batches": [
                    {"batch": f.batch, "seconds": f.seconds, "peak_memory_gib": round(f.plan.peak_memory_gib, 2)}
                    for f in fits
                ],
            }
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(describe(plan))
        if args.fit:
            fit = result["fit"]
            if not fit["batches"]:
                print(f"nothing fits {args.fit}: not even batch 1 x 1 s; try quantize_base nf4, gradient_checkpointing")
            for row in fit["batches"]:
                print(f"fits {args.fit}: batch {row['batch']} x {row['seconds']} s ({row['peak_memory_gib']:.2f} GiB)")
    return result
