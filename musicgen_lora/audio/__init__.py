"""Audio without model knowledge: decode, check, resample and write (io); measure tempo, key, loudness and descriptors
(analysis).
"""

from __future__ import annotations
