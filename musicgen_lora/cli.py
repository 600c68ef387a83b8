"""``musicgen-lora COMMAND [options]``: one console script for every command of the project (installed by
``pip install .``; ``python -m musicgen_lora COMMAND`` runs it without installing).

Each subcommand is the command it names, with the same options and exit codes (0 done, 2 bad input, 130 stopped by
Ctrl-C), named as it was started: ``musicgen-lora train --help`` prints ``usage: musicgen-lora train ...``, and is
otherwise ``python finetune_musicgen.py --help``. ``--debug`` before the command is passed on to it.

Only the chosen command's module is imported (by its name in :data:`COMMANDS`, through ``importlib``): the console
script's ``--help`` imports no command at all, and ``musicgen-lora train`` never loads the Studio, the benchmark, the
evaluation or the synthesiser. ``finetune_musicgen.py`` runs through :func:`finetune` for the same reason: with
nothing on its command line it is the offline demo (:mod:`musicgen_lora.demo.cli`), which alone loads the
synthesiser.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any, NamedTuple

from .errors import UserError, exit_on_user_error, invoked_as

PROG = "musicgen-lora"
SCRIPT = "finetune_musicgen.py"
DEBUG = "--debug"


class Command(NamedTuple):
    module: str  # imported when the command runs; its main(argv) is the command
    mirrors: str
    summary: str


COMMANDS: dict[str, Command] = {
    "train": Command("musicgen_lora.train.cli", f"python {SCRIPT}", "fine-tune MusicGen with LoRA adapters (a JSON "
                     "config and/or --key value flags)"),
    "prepare": Command("musicgen_lora.prepare.cli", "python -m musicgen_lora.prepare", "prepare (chunk, caption, "
                       "encode) a corpus once, before training"),
    "generate": Command("musicgen_lora.generate.cli", "python -m musicgen_lora.generate", "render music with a base "
                        "model and adapters (long songs, melody, merge, blend)"),
    "evaluate": Command("musicgen_lora.evaluate.cli", "python evaluate.py", "compare base and fine-tuned models: "
                        "WAVs, metrics, report.html"),
    "push": Command("musicgen_lora.hub.cli", "python -m musicgen_lora.push", "share a trained run on the Hugging Face "
                    "Hub"),
    "bench": Command("musicgen_lora.bench.suite", "python -m musicgen_lora.bench", "measure speed and memory, write "
                     "bench/RESULTS.md"),
    "demo": Command("musicgen_lora.demo.cli", f"python {SCRIPT} (no arguments)", "the offline demo: train on a tiny "
                    "random MusicGen and a synthetic corpus"),
    "plan": Command("musicgen_lora.plan.cli", "musicgen-lora plan", "predict the peak memory of training a config "
                    "(--fit 12GB: the largest batch x seconds that fits)"),
    "studio": Command("musicgen_lora.studio.__main__", "python -m musicgen_lora.studio", "a local web page to prepare, "
                      "train, listen, evaluate and share (pip install .[studio])"),
}  # fmt: skip


def command_main(name: str) -> Callable[[list[str]], Any]:
    """The ``main(argv)`` of the command ``name``, its module imported now (see the module docstring)."""
    return importlib.import_module(COMMANDS[name].module).main


def is_demo(argv: list[str]) -> bool:
    """Whether a training command line is the offline demo: nothing on it (``--debug`` aside)."""
    return all(word == DEBUG for word in argv)


def finetune(argv: list[str] | None = None, prog: str = SCRIPT) -> Any:
    """``python finetune_musicgen.py [CONFIG.json] [--key value ...]``: the training run, or with nothing on the
    command line the offline demo; returns what that command's ``main`` returns (the run's results)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    with invoked_as(prog):
        return command_main("demo" if is_demo(argv) else "train")(argv)


def usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = [f"usage: {PROG} [{DEBUG}] COMMAND [options]   ({PROG} COMMAND --help lists a command's options; {DEBUG}: "
             "full tracebacks instead of one-line errors)", "", "commands:"]  # fmt: skip
    lines += [f"  {name:<{width}}  {command.summary} (= {command.mirrors})" for name, command in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the subcommand named by the first word (after any ``--debug``); returns 0 when it succeeded (its errors
    exit on their own)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = []
    while argv and argv[0] == DEBUG:  # the script's own option: passed on to the command
        debug.append(argv.pop(0))
    if argv and argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    with exit_on_user_error(debug + argv):
        if not argv or argv[0] not in COMMANDS:
            given = f"unknown command {argv[0]!r}" if argv else "no command given"
            raise UserError(f"{given}; choose one of {', '.join(COMMANDS)} (see {PROG} --help)")
    name, rest = argv[0], argv[1:] + debug[:1]
    if name == "train":
        finetune(rest, prog=f"{PROG} train")
    else:
        with invoked_as(f"{PROG} {name}"):
            command_main(name)(rest)
    return 0
