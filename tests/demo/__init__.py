"""Tests of musicgen_lora.demo: the tiny random MusicGen and the procedural demo corpus."""
