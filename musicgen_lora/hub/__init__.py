"""Publishing to the Hugging Face Hub: the model card, pushing a run (one commit, retried), and pushing a captioned
dataset.
"""

from __future__ import annotations
