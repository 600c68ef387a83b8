"""The ``python -m musicgen_lora.synth`` command: Synthesise a captioned demo corpus (the code lives in
:mod:`musicgen_lora.demo.synth`).
"""

from __future__ import annotations

from .demo.synth import main

if __name__ == "__main__":
    main()
