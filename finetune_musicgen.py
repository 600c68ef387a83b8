"""Fine-tune MusicGen with LoRA adapters.

python finetune_musicgen.py example_configs/musicgen_small_lora.json [--key value ...]
python finetune_musicgen.py                      # the offline demo (tiny model, synthetic corpus)
python finetune_musicgen.py --help               # every option, with help and default

The same command as ``musicgen-lora train``; the code lives in :mod:`musicgen_lora.train.cli` (the demo in
:mod:`musicgen_lora.demo.cli`), and :func:`musicgen_lora.cli.finetune` imports only the one that runs.
"""

from __future__ import annotations

from typing import Any

from musicgen_lora.cli import finetune


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Train from ``argv`` (default: the command line), or run the offline demo when it is empty; returns the run's
    results (see :func:`musicgen_lora.train.run.run_training`)."""
    return finetune(argv)


if __name__ == "__main__":
    main()
