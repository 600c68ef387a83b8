"""The ``python -m musicgen_lora.tiny`` command: Build a tiny random MusicGen folder (the code lives in
:mod:`musicgen_lora.demo.tiny`).
"""

from __future__ import annotations

from .demo.tiny import main

if __name__ == "__main__":
    main()
