"""Processors for every MusicGen variant, including MusicGen-Melody on machines without torchaudio.

transformers' ``MusicgenMelodyFeatureExtractor`` and ``MusicgenMelodyProcessor`` require torchaudio, whose newest
release pins an older torch than this project's; so ``AutoProcessor.from_pretrained`` of any melody checkpoint raises
ImportError on such machines. :func:`load_processor` then builds the same processor class with a pure-torch STFT
(bit-identical chroma). Only resampling inside the extractor and Demucs-stem inputs still need torchaudio; this
project resamples audio itself before extracting chroma."""

from __future__ import annotations

import json
import pathlib

import torch
from transformers import AutoProcessor, AutoTokenizer
from transformers.audio_utils import chroma_filter_bank
from transformers.feature_extraction_sequence_utils import SequenceFeatureExtractor
from transformers.models.musicgen_melody.feature_extraction_musicgen_melody import MusicgenMelodyFeatureExtractor
from transformers.models.musicgen_melody.processing_musicgen_melody import MusicgenMelodyProcessor
from transformers.utils import is_torchaudio_available

MELODY_NUM_CHROMA = 12


MELODY_CHROMA_HOP = 4096


MELODY_CHUNK_SECONDS = 30


class _PowerSpectrogram(torch.nn.Module):
    """Pure-torch twin of the ``torchaudio.transforms.Spectrogram`` that MusicgenMelodyFeatureExtractor builds.

    (``n_fft`` Hann window, ``win_length = n_fft``, centred with reflect padding, ``normalized=True`` i.e.
    divided by the window's L2 norm, ``power=2``.)
    """

    def __init__(self, n_fft: int, hop_length: int):
        super().__init__()
        self.n_fft, self.hop_length = n_fft, hop_length
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        shape = waveform.shape
        spec = torch.stft(
            waveform.reshape(-1, shape[-1]),
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            win_length=self.n_fft,
            window=self.window.to(waveform.device),
            center=True,
            pad_mode="reflect",
            onesided=True,
            return_complex=True,
        )
        spec = spec.reshape(shape[:-1] + spec.shape[-2:]) / self.window.pow(2).sum().sqrt()
        return spec.abs().pow(2)


def melody_feature_extractor(**kwargs):
    """A ``MusicgenMelodyFeatureExtractor`` (defaults = facebook/musicgen-melody's), with or without torchaudio.

    transformers' class needs torchaudio, whose newest release pins an older torch than this project's (so
    ``AutoProcessor.from_pretrained`` of any melody checkpoint raises ImportError here). Without torchaudio this
    returns an instance of the same class whose STFT is :class:`_PowerSpectrogram`: same ``input_features``
    (one-hot chroma, (batch, frames, 12)), same saved config. Only resampling (``sampling_rate`` other than
    the extractor's) and Demucs-stem inputs still need torchaudio.
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
    fe = MusicgenMelodyFeatureExtractor.__new__(MusicgenMelodyFeatureExtractor)
    SequenceFeatureExtractor.__init__(
        fe,
        feature_size=opts["feature_size"],
        sampling_rate=opts["sampling_rate"],
        padding_value=opts["padding_value"],
        return_attention_mask=opts["return_attention_mask"],
        **unknown,
    )
    # the attributes MusicgenMelodyFeatureExtractor.__init__ sets (num_chroma only shapes the filter bank)
    fe.n_fft, fe.hop_length, fe.chunk_length = opts["n_fft"], opts["hop_length"], opts["chunk_length"]
    fe.sampling_rate = opts["sampling_rate"]
    fe.n_samples = opts["chunk_length"] * opts["sampling_rate"]
    filters = chroma_filter_bank(
        sampling_rate=fe.sampling_rate, num_frequency_bins=fe.n_fft, tuning=0, num_chroma=opts["num_chroma"]
    )
    fe.chroma_filters = torch.from_numpy(filters).float()
    fe.spectrogram = _PowerSpectrogram(fe.n_fft, fe.hop_length)
    fe.stem_indices = list(opts["stem_indices"])
    return fe


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
