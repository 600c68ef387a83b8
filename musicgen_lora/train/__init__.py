"""Training: LoRA (or the whole decoder) on the frozen base, the delay-pattern collator, the Trainer with MusicGen's
exact loss, callbacks, checkpoints, samples, plots, and the run.
"""

from __future__ import annotations
