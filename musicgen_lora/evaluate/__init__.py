"""Evidence that a fine-tune helped: render the same prompts with the base model and each adapter, and measure.

:func:`run_evaluation` does the work of ``evaluate.py``:

1. **Held-out cross-entropy per codebook** (``ce_q1..ce_qK``, ``ce``, ``ppl``) on each evaluation dataset, with the
   training collator's delay-pattern labels and the training loss code (:func:`~musicgen_lora.train.trainer.
   codebook_cross_entropy`), for the base model and for every adapter; every adapter is also measured with its
   adapter disabled, which must give the base model's numbers (a check that the right base model is loaded).
2. **Fréchet distances** between generated and reference audio, frame-level, in float64 with the symmetric
   eigendecomposition form: on the model's own EnCodec encoder latents (50 frames/s) and on a weight-free MFCC +
   chroma descriptor (:func:`musicgen_lora.audio.analysis.frame_descriptors`). These are *not* the literature's FAD
   (VGGish embeddings): compare them between models of one evaluation, never with published FAD values.
3. **Prompt adherence**: a prompt that names a tempo ("120 bpm") or a key ("A minor") is compared with the tempo
   and key estimated from each output (:mod:`musicgen_lora.audio.analysis`).
4. **Audio health**: actual vs requested duration, silent and clipped fractions, loudness (BS.1770 LUFS), NaN/Inf.
5. **CLAP** text-audio similarity (optional, a local CLAP checkpoint; audio resampled to its 48 kHz).
6. **Diversity and memorisation**: mean pairwise distance between the samples of one prompt, and the longest run of
   generated code frames found verbatim in the training set's codes.

Outputs (under ``output_dir``): ``<model>/<prompt>-<sample>.wav`` and ``.png`` (spectrogram),
``comparison_results.jsonl`` (one line per file), ``metrics.json`` (one block per model) and ``report.html``."""

from __future__ import annotations
