"""Audio without model knowledge: decode, check, resample and write (io); measure loudness, brightness and
descriptors, and name and score keys and tempi (analysis); estimate tempo (tempo) and key (key), each with a confidence.
"""

from __future__ import annotations
