"""Processors for every MusicGen variant, including MusicGen-Melody on machines without torchaudio.

transformers' ``MusicgenMelodyFeatureExtractor`` and ``MusicgenMelodyProcessor`` require torchaudio, whose newest
release pins an older torch than this project's; so ``AutoProcessor.from_pretrained`` of any melody checkpoint raises
ImportError on such machines. :func:`load_processor` then builds the same processor class with a pure-torch STFT
(bit-identical chroma). Only resampling inside the extractor and Demucs-stem inputs still need torchaudio; this
project resamples audio itself before extracting chroma."""

from __future__ import annotations

import json
import pathlib

from transformers import AutoProcessor, AutoTokenizer
from transformers.utils import is_torchaudio_available

from ..compat import MusicgenMelodyFeatureExtractor, MusicgenMelodyProcessor, melody_extractor_without_torchaudio

MELODY_NUM_CHROMA = 12


MELODY_CHROMA_HOP = 4096


MELODY_CHUNK_SECONDS = 30


def melody_feature_extractor(**kwargs):
    """A ``MusicgenMelodyFeatureExtractor`` (defaults = facebook/musicgen-melody's), with or without torchaudio.

    transformers' class needs torchaudio, whose newest release pins an older torch than this project's (so
    ``AutoProcessor.from_pretrained`` of any melody checkpoint raises ImportError here). Without torchaudio this
    returns an instance of the same class whose STFT is pure torch: same ``input_features``
    (one-hot chroma, (batch, frames, 12)), same saved config. Only resampling (``sampling_rate`` other than
    the extractor's) and Demucs-stem inputs still need torchaudio. (Built in
    :func:`musicgen_lora.compat.melody_extractor_without_torchaudio`.)
    """

    kwargs.pop("feature_extractor_type", None)
    if is_torchaudio_available():
        return MusicgenMelodyFeatureExtractor(**kwargs)

    opts = dict(  # MusicgenMelodyFeatureExtractor.__init__'s defaults
        feature_size=12,
        sampling_rate=32000,
        hop_length=MELODY_CHROMA_HOP,
        chunk_length=MELODY_CHUNK_SECONDS,
        n_fft=16384,
        num_chroma=MELODY_NUM_CHROMA,
        padding_value=0.0,
        return_attention_mask=False,
        stem_indices=[3, 2],
    )
    unknown = {k: kwargs.pop(k) for k in list(kwargs) if k not in opts}
    opts.update(kwargs)
    return melody_extractor_without_torchaudio(opts, unknown)


def load_processor(path, cache_dir: str | None = None, trust_remote_code: bool = False):
    """``AutoProcessor.from_pretrained(path)``, except for MusicGen Melody folders when torchaudio is missing.

    Those get the same ``MusicgenMelodyProcessor`` built from the folder's tokenizer and feature-extractor
    config with :func:`melody_feature_extractor`. Works for real checkpoint folders too.
    """

    folder = pathlib.Path(path)
    if not is_torchaudio_available() and folder.is_dir():
        fe_config = None
        if (folder / "processor_config.json").is_file():  # transformers 5 layout
            fe_config = json.loads((folder / "processor_config.json").read_text()).get("feature_extractor")
        if fe_config is None and (folder / "preprocessor_config.json").is_file():  # Hub layout
            fe_config = json.loads((folder / "preprocessor_config.json").read_text())
        if fe_config and fe_config.get("feature_extractor_type") == "MusicgenMelodyFeatureExtractor":
            fe_config = {k: v for k, v in fe_config.items() if k not in ("processor_class", "n_samples")}
            return MusicgenMelodyProcessor(
                feature_extractor=melody_feature_extractor(**fe_config), tokenizer=AutoTokenizer.from_pretrained(folder)
            )
    return AutoProcessor.from_pretrained(path, cache_dir=cache_dir, trust_remote_code=trust_remote_code)
