"""``python -m musicgen_lora.prepare``: see :mod:`musicgen_lora.prepare.cli`."""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":
    main()
