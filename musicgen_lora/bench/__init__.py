"""The benchmark suite (``python -m musicgen_lora.bench``): see :mod:`.suite`; results in bench/RESULTS.md."""

from __future__ import annotations




