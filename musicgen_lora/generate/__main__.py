"""``python -m musicgen_lora.generate``: see :mod:`musicgen_lora.generate.cli`."""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":
    main()
