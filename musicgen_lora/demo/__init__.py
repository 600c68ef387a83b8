"""The offline demo and test assets.

* A tiny random MusicGen built in code, never downloaded: :mod:`.tiny` (build, save, ``python -m
  musicgen_lora.tiny``) over :mod:`.tiny_configs` (sizes, variants, configs), :mod:`.tiny_tokenizer` (the caption
  tokenizer) and :mod:`.tiny_codec` (codebooks fitted to synthetic audio).
* A procedural captioned corpus with known tempo and key: :mod:`.synth` (the corpus, ``python -m
  musicgen_lora.synth``) over :mod:`.render` (one clip: arrangement, mix, master), :mod:`.styles` (genre tables),
  :mod:`.composition` (keys, harmony, melody), :mod:`.instruments` (voices and drum kits) and :mod:`.dsp` (filters).
* The embedded default config of ``python finetune_musicgen.py``: :mod:`.assets`.
"""

from __future__ import annotations
