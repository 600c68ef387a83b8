"""``musicgen-lora COMMAND [options]``: one console script for every command of the project (installed by
``pip install .``; ``python -m musicgen_lora COMMAND`` runs it without installing).

Each subcommand is the command it names, with the same options and exit codes (0 done, 2 bad input, 130 stopped by
Ctrl-C): ``musicgen-lora train config.json`` is ``python finetune_musicgen.py config.json``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, NamedTuple

from .bench.suite import main as bench_main
from .errors import UserError, exit_on_user_error
from .evaluate.cli import main as evaluate_main
from .generate.cli import main as generate_main
from .hub.cli import main as push_main
from .plan.cli import main as plan_main
from .prepare.cli import main as prepare_main
from .studio.__main__ import main as studio_main
from .train.cli import main as train_main

PROG = "musicgen-lora"


class Command(NamedTuple):
    run: Callable[[list[str]], Any]
    mirrors: str
    summary: str


def run_demo(argv: list[str]) -> Any:
    """The offline demo: training with an empty command line (a tiny random MusicGen and a synthetic corpus)."""
    with exit_on_user_error(argv):
        if argv:
            raise UserError(
                f"{PROG} demo takes no options (got {argv[0]!r}); for your own run use: {PROG} train CONFIG.json"
            )
    return train_main([])


COMMANDS: dict[str, Command] = {
    "train": Command(train_main, "python finetune_musicgen.py", "fine-tune MusicGen with LoRA adapters (a JSON config "
                     "and/or --key value flags)"),
    "prepare": Command(prepare_main, "python -m musicgen_lora.prepare", "prepare (chunk, caption, encode) a corpus "
                       "once, before training"),
    "generate": Command(generate_main, "python -m musicgen_lora.generate", "render music with a base model and "
                        "adapters (long songs, melody, merge, blend)"),
    "evaluate": Command(evaluate_main, "python evaluate.py", "compare base and fine-tuned models: WAVs, metrics, "
                        "report.html"),
    "push": Command(push_main, "python -m musicgen_lora.push", "share a trained run on the Hugging Face Hub"),
    "bench": Command(bench_main, "python -m musicgen_lora.bench", "measure speed and memory, write bench/RESULTS.md"),
    "plan": Command(plan_main, "musicgen-lora plan", "predict the peak memory of training a config (--fit 12GB: "
                    "the largest batch x seconds that fits)"),
    "demo": Command(run_demo, "python finetune_musicgen.py (no arguments)", "the offline demo: train on a tiny "
                    "random MusicGen and a synthetic corpus"),
    "studio": Command(studio_main, "python -m musicgen_lora.studio", "a local web page to prepare, train, listen, "
                      "evaluate and share (pip install .[studio])"),
}  # fmt: skip


def usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = [f"usage: {PROG} COMMAND [options]   ({PROG} COMMAND --help lists a command's options)", "", "commands:"]
    lines += [f"  {name:<{width}}  {command.summary} (= {command.mirrors})" for name, command in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the subcommand named by the first word; returns 0 when it succeeded (its errors exit on their own)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    with exit_on_user_error(argv):
        if not argv or argv[0] not in COMMANDS:
            given = f"unknown command {argv[0]!r}" if argv else "no command given"
            raise UserError(f"{given}; choose one of {', '.join(COMMANDS)} (see {PROG} --help)")
    COMMANDS[argv[0]].run(argv[1:])
    return 0
