"""Generation with a base MusicGen and LoRA adapters: rendering (:mod:`.render`), songs longer than the 30 s
window (:mod:`.long_form`), adapters, blends and merging (:mod:`.adapters`), and the command line (:mod:`.cli`)."""

from __future__ import annotations
