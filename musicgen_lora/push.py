"""The ``python -m musicgen_lora.push`` command: push a finished run to the Hugging Face Hub (the code lives in
:mod:`musicgen_lora.hub.cli`).
"""

from __future__ import annotations

from .hub.cli import main

if __name__ == "__main__":
    main()
