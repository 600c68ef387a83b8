"""``python -m musicgen_lora.evaluate [options]``: the evaluation command from the installed package (the same as
``python evaluate.py`` and ``musicgen-lora evaluate``); see :mod:`musicgen_lora.evaluate.cli`."""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":
    main()
