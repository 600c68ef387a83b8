"""Configuration: argument dataclasses with help text, JSON + command-line parsing, validation with one-line errors,
and the popular MusicGen LoRA script's configs.
"""

from __future__ import annotations
