"""Memorisation: how much of a generated clip copies the training data, which training file, and where.

Two measures, reported side by side (neither needs a model): the copy score on the EnCodec codes
(:mod:`musicgen_lora.train.copy_score`, part of the training road: training scores its samples with it) and the
melody similarity on the audio (:mod:`.melody`); :mod:`.check` applies both to evaluation clips, with the thresholds
that flag a copy.
"""
