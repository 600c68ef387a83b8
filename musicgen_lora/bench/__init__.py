"""The benchmark suite (``python -m musicgen_lora.bench``; results in bench/RESULTS.md): the plan and command line
(:mod:`.suite`), the training cases and their runs (:mod:`.cases`), the measuring instruments (:mod:`.measure`), the
measurements besides training (:mod:`.parts`) and the table (:mod:`.table`)."""

from __future__ import annotations
