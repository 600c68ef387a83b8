"""What a MusicGen checkpoint is and how to load it, for every stage: the model and its processor (any variant: mono,
stereo, melody), its audio format, and its EnCodec.
"""

from __future__ import annotations
