"""Tests of musicgen_lora.bench: the benchmark suite, its measurements and its table."""
