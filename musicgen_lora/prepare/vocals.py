"""Optional vocal removal with Demucs (``demucs_model_path``), before captioning and encoding.

MusicGen was trained on instrumental music; songs with vocals teach it garbled singing. With a local Demucs checkpoint,
each track is separated into its stems and the sum of every stem but ``vocals`` (drums + bass + other for the
4-stem models) replaces the track for the rest of preparation: captions are measured on it and EnCodec encodes it.

The checkpoint is used as it is on disk, never downloaded: a ``.th`` file of one model (as Demucs' releases ship
them, e.g. ``955717e8-8726e21a.th`` of ``htdemucs``), or a folder in Demucs' ``--repo`` layout holding one bag
``NAME.yaml`` with its ``.th`` files. The ``demucs`` package is imported only when the option is set (``pip install
demucs==4.1.0``; it needs no torchaudio). Separation runs without random time shifts (``shifts=0``), so the same
file always gives the same instrumental; each instrumental is cached as 24-bit FLAC under
``<data_cache_dir>/instrumental/``, keyed by the source file's identity and the checkpoint's fingerprint."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from ..audio.io import decode_audio, describe_source, resample, set_channels
from ..config.validation import check_demucs_path, require_demucs
from ..errors import UserError, one_line
from ..files import file_identity, files_fingerprint, replaced_atomically

VERSION = 1  # bump when the separation settings change, so cached instrumentals are redone


def _demucs() -> Any:
    """The demucs modules used here, or a one-line error saying how to install them."""
    require_demucs()
    # demucs is an optional, heavy dependency: imported only when demucs_model_path is set
    import demucs.apply
    import demucs.pretrained
    import demucs.states

    return demucs


def load_demucs(path: str) -> Any:
    """The separation model (a Demucs model or bag of models) in eval mode.

    Raises:
        UserError: it cannot be loaded, or it has no ``vocals`` stem.
    """
    demucs = _demucs()
    checkpoint = check_demucs_path(path)
    try:
        if checkpoint.is_file():
            model = demucs.states.load_model(checkpoint)
        else:
            bags = sorted(checkpoint.glob("*.yaml"))
            name = bags[0].stem if bags else next(checkpoint.glob("*.th")).stem.split("-")[0]
            model = demucs.pretrained.get_model(name, repo=checkpoint)
    except Exception as err:  # noqa: BLE001 - any loading problem is the user's checkpoint
        raise UserError(f"cannot load the Demucs checkpoint '{path}': {one_line(err)[:200]}; check the file") from None
    if "vocals" not in model.sources:
        raise UserError(
            f"the Demucs checkpoint '{path}' separates {', '.join(model.sources)}, not vocals; use a model "
            "with a vocals stem (htdemucs, mdx_extra, ...)"
        )
    return model.eval()


class VocalRemover:
    """Instrumental versions of tracks, separated once and cached; the model is loaded on first need."""

    def __init__(self, path: str, cache_root: Path):

        self.path = path
        self.folder = cache_root / "instrumental"
        self.fingerprint = files_fingerprint(path)
        self._model: Any = None

    def target(self, source: Any) -> Path:
        name = Path(describe_source(source)).stem if isinstance(source, (str, dict)) else "track"
        digest = hashlib.sha256(
            f"{json.dumps(file_identity(source))}|{self.fingerprint}|{VERSION}".encode()
        ).hexdigest()[:16]
        return self.folder / f"{name[:60]}-{digest}.flac"

    def separate(self, audio: np.ndarray, sr: int) -> tuple[np.ndarray, int]:
        """(channels, samples) audio -> its instrumental at the model's rate and channel count."""
        import torch

        demucs = _demucs()
        if self._model is None:
            self._model = load_demucs(self.path)
        model = self._model
        wav = torch.from_numpy(resample(set_channels(audio, model.audio_channels), sr, model.samplerate))
        ref = wav.mean(0)
        mean, std = ref.mean(), ref.std().clamp_min(1e-8)  # Demucs separates standardised audio
        device = "cuda" if torch.cuda.is_available() else "cpu"
        with torch.inference_mode():
            stems = demucs.apply.apply_model(
                model, ((wav - mean) / std)[None], shifts=0, split=True, overlap=0.25, device=device
            )[0]  # (sources, channels, samples)
        keep = [i for i, name in enumerate(model.sources) if name != "vocals"]
        instrumental = stems[keep].sum(dim=0) * std + mean
        return instrumental.float().cpu().numpy(), model.samplerate

    def __call__(self, source: Any) -> str:
        """The path of ``source``'s instrumental (separated now, or from the cache)."""
        import soundfile as sf

        target = self.target(source)
        if not target.is_file():
            audio, sr = self.separate(*decode_audio(source))
            with replaced_atomically(target) as staging:  # never a half-written instrumental
                sf.write(staging, np.clip(audio, -1.0, 1.0).T, sr, subtype="PCM_24")
        return str(target)


def remove_vocals(
    raw: datasets.Dataset, path: str, cache_root: Path, progress: Callable[..., Any] | None = None
) -> datasets.Dataset:
    """``raw`` with its ``audio`` column replaced by the paths of the tracks' instrumentals."""
    remover = VocalRemover(path, cache_root)
    sources = raw["audio"]
    if progress is not None:
        sources = progress(iterable=sources, desc="Removing vocals (Demucs)", unit="track")
    paths = [remover(source) for source in sources]
    return raw.remove_columns(["audio"]).add_column("audio", paths)
