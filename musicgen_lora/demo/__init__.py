"""The offline demo and test assets: a tiny random MusicGen built in code (tiny), a procedural captioned corpus
(synth), and the embedded default config (assets).
"""

from __future__ import annotations




