"""Auto-captions (add_metadata): tempo and key from analysis.py, checked against the synthetic corpus' ground truth."""

from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from musicgen_lora.audio.analysis import parse_key
from musicgen_lora.config import caption_template
from musicgen_lora.config.parsing import parse_config
from musicgen_lora.errors import UserError
from musicgen_lora.prepare import captions, clap_tags, measurements
from musicgen_lora.prepare.cache_keys import module_fingerprint

from ..conftest import base_argv
from ..hub.fake_hub import USER, served_hub
from .conftest import prepared_split


@pytest.fixture(scope="module")
def truth_corpus(tmp_path_factory) -> tuple[Path, list[dict]]:
    """10 clips of 6 s (every genre twice) with ground-truth bpm and key, and no captions on disk."""
    from musicgen_lora.demo.synth import synthesize_corpus

    folder = tmp_path_factory.mktemp("captioning") / "corpus"
    rows = synthesize_corpus(folder, clips=10, seconds=6.0, seed=11)
    (folder / "metadata.jsonl").unlink()  # a plain folder of wavs: captions must come from the audio
    return folder, rows


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("captioning-cache")


def prepare(tmp_path, model_dir, model, dataset, cache, *extra):
    args = parse_config(base_argv(model_dir, dataset, tmp_path / "out", cache) + list(extra)).data
    return prepared_split(args, "train", model, module_fingerprint(model.audio_encoder), False)


def test_captions_get_tempo_and_key_matching_ground_truth(tmp_path, tiny_model_dir, model, truth_corpus, cache):
    folder, rows = truth_corpus
    split = prepare(
        tmp_path, tiny_model_dir, model, folder, cache, "--add_metadata", "true", "--instance_prompt", "sks"
    )
    assert len(split) == len(rows)
    tempo_hits, key_hits = 0, 0
    for caption, row in zip(split["text"], rows, strict=False):  # files sorted by name = the corpus order
        words = caption.split(", ")
        assert words[0] == "sks" and words[1].endswith(" bpm") and len(words) == 3, caption
        tempo_hits += abs(int(words[1].split()[0]) - row["bpm"]) <= 2
        key_hits += parse_key(words[2]) == parse_key(row["key"])
    # the acceptance: tempo within 2 bpm and key with mode right on at least 90 % of the clips
    assert tempo_hits >= 0.9 * len(rows), split["text"]
    assert key_hits >= 0.9 * len(rows), (split["text"], [r["key"] for r in rows])


def test_metadata_merges_with_existing_captions(tmp_path, tiny_model_dir, model, truth_corpus, cache):
    source, rows = truth_corpus
    folder = tmp_path / "captioned"
    folder.mkdir()
    for name in ("clip_000.wav", "clip_001.wav", "clip_002.wav"):
        shutil.copy(source / name, folder / name)
    (folder / "clip_000.txt").write_text("lofi hip hop, dusty drums")  # genre words only: tempo and key added
    (folder / "clip_001.txt").write_text("techno, 131 bpm, G minor")  # states both: kept as written
    split = prepare(tmp_path, tiny_model_dir, model, folder, cache, "--add_metadata", "true")
    first = split["text"][0].split(", ")
    assert first[:2] == ["lofi hip hop", "dusty drums"] and first[2] == f"{rows[0]['bpm']} bpm" and len(first) == 4
    assert split["text"][1] == "techno, 131 bpm, G minor"
    assert split["text"][2] == f"{rows[2]['bpm']} bpm, {rows[2]['key']}"  # no caption at all: the estimates alone
    without = prepare(tmp_path, tiny_model_dir, model, folder, cache, "--instance_prompt", "x")
    assert without["text"] == ["x, lofi hip hop, dusty drums", "x, techno, 131 bpm, G minor", "x"]


def test_estimates_are_cached_and_never_re_encode(tmp_path, tiny_model_dir, model, truth_corpus, cache, monkeypatch):
    folder, _ = truth_corpus
    first = prepare(tmp_path, tiny_model_dir, model, folder, cache, "--add_metadata", "true", "--instance_prompt", "a")
    codes_dirs = sorted(p.name for p in cache.glob("codes-*"))

    def boom(*args, **kwargs):
        raise AssertionError("measured again")

    monkeypatch.setattr(captions, "measure", boom)
    monkeypatch.setattr("musicgen_lora.prepare.encoding.encode_clip", boom)
    again = prepare(tmp_path, tiny_model_dir, model, folder, cache, "--add_metadata", "true", "--instance_prompt", "b")
    assert [t[1:] for t in again["text"]] == [t[1:] for t in first["text"]]  # only the trigger word changed
    assert sorted(p.name for p in cache.glob("codes-*")) == codes_dirs


def test_a_new_analysis_version_measures_again(tmp_path, monkeypatch):
    # estimates cached by an older estimator (before a change of its constants) must not outlive it
    path = tmp_path / "clip.wav"
    sf.write(path, np.sin(np.linspace(0, 2000, 16000)).astype(np.float32), 16000)
    calls = []

    def compute(audio, sr):
        calls.append(sr)
        return {"n": len(calls)}

    first = measurements.cached_measure(str(path), tmp_path / "cache", "tempo", compute)
    assert measurements.cached_measure(str(path), tmp_path / "cache", "tempo", compute) == first and len(calls) == 1
    monkeypatch.setattr(measurements, "ANALYSIS_VERSION", measurements.ANALYSIS_VERSION + 1)
    assert measurements.cached_measure(str(path), tmp_path / "cache", "tempo", compute) == {"n": 2}


def test_unmeasurable_track_without_caption_still_needs_one(tmp_path, tiny_model_dir, model, cache):
    import numpy as np
    import soundfile as sf

    folder = tmp_path / "silent"
    folder.mkdir()
    # a DC offset: no beat, no key worth a caption (digital silence would be left out before captioning)
    sf.write(folder / "quiet.wav", np.full(32000 * 2, 0.01, np.float32), 32000)
    nothing = {"bpm": None, "bpm_confidence": None, "bpm_alternative": None, "key": None, "key_confidence": None}
    assert measurements.measure(np.zeros((1, 32000 * 2), np.float32), 32000) == nothing
    with pytest.raises(UserError, match="1 clip.* have no caption"):
        prepare(tmp_path, tiny_model_dir, model, folder, cache, "--add_metadata", "true")


# ----------------------------------------------------------------------------------------------- caption_template


def test_template_parts_with_an_empty_field_vanish_with_their_separator():
    template = caption_template.CaptionTemplate("{prompt} style; {caption}, {bpm} bpm, {key}")
    full = {"prompt": "sks", "caption": "lofi, dusty drums", "bpm": "85", "key": "A minor"}
    assert template.render(full) == "sks style; lofi, dusty drums, 85 bpm, A minor"
    assert template.render({**full, "prompt": ""}) == "lofi, dusty drums, 85 bpm, A minor"  # no leading separator
    assert template.render({**full, "caption": "", "key": ""}) == "sks style, 85 bpm"  # "{bpm} bpm" kept whole
    assert template.render({**full, "bpm": ""}) == "sks style; lofi, dusty drums, A minor"  # no dangling " bpm"
    assert template.render({}) == ""
    assert template.fields == {"prompt", "caption", "bpm", "key"}
    # a tempo or key the own caption states is not repeated, unless the template leaves the caption out
    measured = {"metadata": {"bpm": 84, "key": "A minor"}}
    shown = captions.track_fields("lofi, 85 bpm, A minor", "sks", measured)
    assert (shown["bpm"], shown["key"]) == ("", "")
    hidden = captions.track_fields("lofi, 85 bpm, A minor", "sks", measured, caption_shown=False)
    assert (hidden["bpm"], hidden["key"]) == ("84", "A minor")


def test_tempo_in_doubt_is_captioned_with_both_octaves_and_a_faint_one_is_left_out():
    template = caption_template.CaptionTemplate(caption_template.DEFAULT_TEMPLATE)

    def caption(**metadata):
        return template.render(captions.track_fields("lofi", "sks", {"metadata": metadata}))

    threshold = captions.CONFIDENCE_THRESHOLDS["bpm"]
    assert caption(bpm=85, bpm_confidence=0.9, bpm_alternative=None) == "sks, lofi, 85 bpm"
    # the octave in doubt: both tempi, the slower first, whichever the estimate preferred
    assert caption(bpm=170, bpm_confidence=0.5, bpm_alternative=85) == "sks, lofi, 85 or 170 bpm"
    assert caption(bpm=85, bpm_confidence=threshold, bpm_alternative=170) == "sks, lofi, 85 or 170 bpm"
    # a triple metre's level in doubt (a 6/8 beat or two thirds of it): the same wording
    assert caption(bpm=90, bpm_confidence=0.5, bpm_alternative=60) == "sks, lofi, 60 or 90 bpm"
    # below the confidence threshold no tempo at all, with or without an alternative
    assert caption(bpm=85, bpm_confidence=threshold / 2, bpm_alternative=170) == "sks, lofi"
    assert caption(bpm=85, bpm_confidence=threshold / 2) == "sks, lofi"
    # a caption that states a tempo keeps it; the own caption's words are not doubled
    stated = captions.track_fields("lofi, 90 bpm", "sks", {"metadata": {"bpm": 85, "bpm_alternative": 170}})
    assert stated["bpm"] == ""
    assert captions.tempo_words(120) == "120" and captions.tempo_words(120, 120) == "120"


def test_review_row_shows_the_alternative_tempo():
    found = {"metadata": {"bpm": 85, "bpm_confidence": 0.4, "bpm_alternative": 170, "key": None}}
    row = captions.review_row("a.wav", "sks, 85 or 170 bpm", None, found)
    assert (row["bpm"], row["bpm_alternative"], row["text"]) == (85, 170, "sks, 85 or 170 bpm")


def _parse(tmp_path, *extra):
    return parse_config(["--model_name_or_path", "m", "--dataset_name", "d", "--output_dir", str(tmp_path), *extra])


def test_template_errors_are_one_line_and_list_the_fields(tmp_path):
    with pytest.raises(UserError) as error:
        _parse(tmp_path, "--caption_template", "{prompt}, {genra}")
    message = str(error.value)
    assert "\n" not in message and "unknown field {genra}" in message
    assert all("{" + name + "}" in message for name in caption_template.FIELDS)
    with pytest.raises(UserError, match=r"names \{loudness\}, which add_metadata measures; set add_metadata true"):
        _parse(tmp_path, "--caption_template", "{caption}, {loudness}")
    with pytest.raises(UserError, match=r"names \{tags\}, which CLAP tagging fills; set clap_model_name_or_path"):
        _parse(tmp_path, "--caption_template", "{caption}, {tags}")
    with pytest.raises(UserError, match="not a valid template"):
        _parse(tmp_path, "--caption_template", "{caption")
    assert _parse(tmp_path, "--caption_template", "{caption}; {lufs}", "--add_metadata", "true").data.caption_template


def test_heard_loudness_follows_the_normalisation():
    assert captions.heard_loudness(-30.0, 0.1, None) == -30.0  # no target: the recording's level
    assert captions.heard_loudness(-30.0, 0.1, -14.0) == -14.0  # room to reach the target
    # a peak of 0.9 allows only +0.9 dB from -20 LUFS: normalisation stops at full scale, and so does the word
    assert captions.heard_loudness(-20.0, 0.9, -14.0) == pytest.approx(-20.0 - 20 * math.log10(0.9))


def test_loudness_and_brightness_words(tmp_path, tiny_model_dir, model, cache, monkeypatch):
    sr = 32000
    t = np.arange(3 * sr) / sr
    folder = tmp_path / "levels"
    folder.mkdir()
    sf.write(folder / "a_quiet_low.wav", 0.01 * np.sin(2 * np.pi * 220 * t), sr, subtype="FLOAT")  # -44 LUFS, 225 Hz
    noise = 0.2 * np.random.default_rng(0).standard_normal(3 * sr)  # -11 LUFS, centroid 8 kHz
    sf.write(folder / "b_loud_noise.wav", noise, sr, subtype="FLOAT")
    template = ["--add_metadata", "true", "--caption_template", "{loudness}, {brightness}, {lufs}"]
    split = prepare(tmp_path, tiny_model_dir, model, folder, cache, *template)
    assert split["text"] == ["very quiet, dark, -44 LUFS", "loud, very bright, -11 LUFS"]
    # normalised to -14 LUFS, both tracks sound "moderately loud" to the model; the levels are not measured again
    monkeypatch.setattr(measurements, "decode_audio", _boom)
    split = prepare(tmp_path, tiny_model_dir, model, folder, cache, *template, "--loudness_target_lufs", "-14")
    assert split["text"] == ["moderately loud, dark, -14 LUFS", "moderately loud, very bright, -14 LUFS"]


def _boom(*args, **kwargs):
    raise AssertionError("audio decoded again")


# ----------------------------------------------------------------------------------------------------- CLAP tags


@pytest.fixture(scope="module")
def clap_dir(tiny_clap_dir) -> Path:
    return tiny_clap_dir  # the tiny local CLAP that evaluation is tested with too


GENRES = ["rock", "jazz", "techno", "lofi hip hop"]
INSTRUMENTS = ["piano", "saw synth"]


def prepare_with_clap(tmp_path, model_dir, model, dataset, cache, clap, **options):
    """prepare_split with CLAP tags; ``options`` go to a JSON config (lists may be empty there)."""
    values = {
        "clap_model_name_or_path": str(clap),
        "clap_genre_labels": GENRES,
        "clap_mood_labels": [],
        "clap_instrument_labels": INSTRUMENTS,
        **options,
    }
    config = tmp_path / "clap.json"
    config.write_text(json.dumps(values))
    args = parse_config([str(config)] + base_argv(model_dir, dataset, tmp_path / "out", cache)).data
    return prepared_split(args, "train", model, module_fingerprint(model.audio_encoder), False)


def test_clap_excerpts_sit_at_fixed_evenly_spread_places():
    mono = np.arange(2500, dtype=np.float32)  # 25 s at 100 Hz, CLAP window 10 s: three windows
    starts = [int(e[0]) for e in clap_tags.clap_excerpts(mono, 100, 10.0)]
    assert starts == [375, 750, 1125] and all(len(e) == 1000 for e in clap_tags.clap_excerpts(mono, 100, 10.0))
    assert [len(e) for e in clap_tags.clap_excerpts(mono[:800], 100, 10.0)] == [800]  # shorter: the whole clip


def test_a_clap_folder_without_its_weights_is_one_line_with_the_fix(tmp_path, clap_dir):
    """The weights of a CLAP checkpoint are not on a machine that cannot reach the Hub: a folder holding only its
    config (a download that stopped) says so in one line, with what the folder must hold (the Studio shows it)."""
    from musicgen_lora.prepare.clap import Clap

    folder = tmp_path / "clap"
    shutil.copytree(clap_dir, folder, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    with pytest.raises(UserError) as refused:
        Clap(str(folder), "clap_model_name_or_path")
    message = str(refused.value)
    assert message.startswith(f"cannot load the CLAP checkpoint '{folder}' (clap_model_name_or_path): ")
    assert message.endswith("pass a folder holding a transformers ClapModel (config.json, weights, processor files)")
    assert "\n" not in message and "model.safetensors" in message  # what is missing, named


def test_clap_tags_are_zero_shot_probabilities_and_cached(
    tmp_path, tiny_model_dir, model, truth_corpus, cache, clap_dir, monkeypatch
):
    from transformers import pipeline

    from musicgen_lora.audio.io import decode_audio, resample
    from musicgen_lora.prepare.clap import Clap

    source, _ = truth_corpus
    folder = tmp_path / "three"
    folder.mkdir()
    for name in ("clip_000.wav", "clip_001.wav", "clip_002.wav"):  # 6 s each: one CLAP window
        shutil.copy(source / name, folder / name)
    split = prepare_with_clap(
        tmp_path, tiny_model_dir, model, folder, cache, clap_dir, clap_tag_threshold=0.0, instance_prompt="sks"
    )
    # the same probabilities as transformers' zero-shot pipeline on the clip resampled to CLAP's 48 kHz
    classify = pipeline("zero-shot-audio-classification", model=str(clap_dir))
    args = parse_config(
        [
            "--model_name_or_path",
            "m",
            "--dataset_name",
            "d",
            "--output_dir",
            str(tmp_path),
            "--clap_model_name_or_path",
            str(clap_dir),
            "--clap_genre_labels",
            *GENRES,
            "--clap_instrument_labels",
            *INSTRUMENTS,
        ]
    ).data
    tagger = clap_tags.ClapTagger(args, cache)
    for caption, path in zip(split["text"], sorted(folder.glob("*.wav")), strict=False):
        audio, sr = decode_audio(str(path))
        embedding = measurements.cached_measure(str(path), cache, tagger.kind, _boom)  # cached by the first run
        ours = tagger.probabilities(embedding)
        for name, labels, template in (
            ("genre", GENRES, "This is {} music."),
            ("instrument", INSTRUMENTS, "This is a sound of {}."),
        ):
            theirs = classify(resample(audio, sr, 48000)[0], candidate_labels=labels, hypothesis_template=template)
            assert ours[name] == pytest.approx({r["label"]: r["score"] for r in theirs}, abs=1e-4)
        words = caption.split(", ")
        genre = max(ours["genre"], key=ours["genre"].get)
        instrument = max(ours["instrument"], key=ours["instrument"].get)
        assert words == ["sks", *genre.split(", "), instrument], caption  # threshold 0: the best label of each set
    # a higher threshold, other labels and another template: no audio decoded or embedded again, tags follow
    monkeypatch.setattr(measurements, "decode_audio", _boom)
    monkeypatch.setattr(Clap, "audio_embeddings", _boom)
    strict = prepare_with_clap(
        tmp_path, tiny_model_dir, model, folder, cache, clap_dir, clap_tag_threshold=1.0, instance_prompt="sks"
    )
    assert strict["text"] == ["sks"] * 3  # no label is certain: the tags vanish, separators too
    relabelled = prepare_with_clap(
        tmp_path,
        tiny_model_dir,
        model,
        folder,
        cache,
        clap_dir,
        clap_tag_threshold=0.0,
        clap_genre_labels=["ambient", "metal"],
        clap_instrument_labels=[],
        caption_template="{genre} music",
    )
    assert set(relabelled["text"]) <= {"ambient music", "metal music"}


# ------------------------------------------------------------------------------- caption options never re-encode


def count_encoder_calls(monkeypatch, model) -> list:
    calls: list = []
    encode = model.audio_encoder.encode
    monkeypatch.setattr(model.audio_encoder, "encode", lambda *a, **k: calls.append(1) or encode(*a, **k))
    return calls


def test_changing_a_caption_option_redoes_only_captioning(tmp_path, tiny_model_dir, model, truth_corpus, monkeypatch):
    calls = count_encoder_calls(monkeypatch, model)
    cache = tmp_path / "fresh-cache"  # the first run encodes and measures everything
    folder, rows = truth_corpus
    rows = rows[:4]
    first = prepare(
        tmp_path,
        tiny_model_dir,
        model,
        folder,
        cache,
        "--add_metadata",
        "true",
        "--instance_prompt",
        "a",
        "--caption_template",
        "{prompt}, {caption}, {bpm} bpm, {key}, {brightness}",
        "--max_train_samples",
        "4",
    )
    entries = sorted(p.name for p in cache.rglob("*") if "analysis" not in p.parts)
    encoded = len(calls)
    assert encoded >= len(rows) and all(
        len(list((cache / "analysis").glob(f"{kind}-*.json"))) == len(rows) for kind in ("metadata", "level")
    )
    monkeypatch.setattr(measurements, "decode_audio", _boom)  # no audio is read for captions again
    again = prepare(
        tmp_path,
        tiny_model_dir,
        model,
        folder,
        cache,
        "--add_metadata",
        "true",
        "--instance_prompt",
        "b",
        "--caption_template",
        "{key}; {prompt} ({bpm} bpm)",
        "--max_train_samples",
        "4",
    )
    assert len(calls) == encoded  # no EnCodec call: the codes come from the cache
    assert sorted(p.name for p in cache.rglob("*") if "analysis" not in p.parts) == entries  # no new cache entry
    for old, new in zip(first["text"], again["text"], strict=False):
        words = old.split(", ")
        assert new == f"{words[2]}; b ({words[1]})"  # same measurements, new template and trigger word
    assert again["codes"] == first["codes"]


# --------------------------------------------------------------------------------------- push_metadata_repo_id

TOKEN = "hf_testSecretToken123"


@pytest.fixture()
def fake_hub(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    with served_hub(monkeypatch, TOKEN) as server:
        yield server


def test_captioned_split_is_pushed_once_and_trains_from_the_hub_layout(
    tmp_path, tiny_model_dir, model, truth_corpus, cache, fake_hub
):
    source, _ = truth_corpus
    folder = tmp_path / "songs"
    folder.mkdir()
    for name in ("clip_000.wav", "clip_001.wav", "clip_002.wav"):  # their first 3 s
        audio, sr = sf.read(source / name)
        sf.write(folder / name, audio[: 3 * sr], sr)
    (folder / "clip_001.txt").write_text("techno, driving")
    repo = f"{USER}/songs-captioned"
    options = ["--add_metadata", "true", "--instance_prompt", "sks", "--push_metadata_repo_id", repo]
    split = prepare(tmp_path, tiny_model_dir, model, folder, cache, *options)
    pushed = fake_hub.repos[repo]
    assert pushed.repo_type == "dataset" and pushed.private is True and len(pushed.commits) == 1
    names = ["00000-clip_000.wav", "00001-clip_001.wav", "00002-clip_002.wav"]
    assert set(pushed.files) == {"README.md", "data/train/metadata.jsonl", *(f"data/train/{n}" for n in names)}
    for name in names:  # the audio as it was
        assert pushed.files[f"data/train/{name}"] == (folder / name[6:]).read_bytes()
    rows = [json.loads(line) for line in pushed.files["data/train/metadata.jsonl"].decode().splitlines()]
    assert [r["file_name"] for r in rows] == names and [r["text"] for r in rows] == split["text"]  # final captions
    assert rows[1]["own_caption"] == "techno, driving" and rows[0]["own_caption"] is None
    for r in rows:  # each estimate with its confidence; in the caption only when confident enough
        assert (f"{r['bpm']} bpm" in r["text"]) == (r["bpm_confidence"] >= captions.CONFIDENCE_THRESHOLDS["bpm"]), r
        assert (r["key"] in r["text"]) == (r["key_confidence"] >= captions.CONFIDENCE_THRESHOLDS["key"]), r
    assert "path: data/train/*" in pushed.files["README.md"].decode()
    # the same data again: nothing new is pushed
    prepare(tmp_path, tiny_model_dir, model, folder, cache, *options)
    assert len(pushed.commits) == 1
    # the pushed layout trains as it is, with the captions final (no captioning options)
    download = tmp_path / "download"
    for path, content in pushed.files.items():
        (download / path).parent.mkdir(parents=True, exist_ok=True)
        (download / path).write_bytes(content)
    assert prepare(tmp_path, tiny_model_dir, model, download / "data", cache)["text"] == split["text"]


def test_a_failed_metadata_push_is_one_line_and_keeps_local_results(
    tmp_path, tiny_model_dir, model, truth_corpus, cache, fake_hub, monkeypatch
):
    folder, _ = truth_corpus
    fake_hub.fail_always["commit"] = 403  # permanent: no retry
    options = ["--add_metadata", "true", "--max_train_samples", "2"]
    with pytest.raises(UserError) as error:
        prepare(tmp_path, tiny_model_dir, model, folder, cache, *options, "--push_metadata_repo_id", "me/songs")
    message = str(error.value)
    assert "\n" not in message and "pushing the captioned train split to dataset 'me/songs' failed (HTTP 403" in message
    assert "local caches are intact" in message and fake_hub.calls("commit") == [403]
    # what was measured and encoded stays: the same run without the push reads it all back
    calls = count_encoder_calls(monkeypatch, model)
    monkeypatch.setattr(measurements, "decode_audio", _boom)
    assert len(prepare(tmp_path, tiny_model_dir, model, folder, cache, *options)) == 2 and not calls


# ---------------------------------------------------------------------------------------------- vocal removal


@pytest.fixture(scope="module")
def tiny_demucs(tmp_path_factory) -> Path:
    """A random 4-stem HDemucs (demucs' own unit-test model, 0.6 M parameters) saved as a local .th checkpoint."""
    pytest.importorskip("demucs", reason="demucs is an optional dependency (pip install demucs==4.1.0)")
    import torch
    from demucs.pretrained import demucs_unittest

    torch.manual_seed(0)
    model = demucs_unittest()
    args, kwargs = model._init_args_kwargs
    path = tmp_path_factory.mktemp("demucs") / "tiny-demucs.th"
    torch.save({"klass": type(model), "args": args, "kwargs": kwargs, "state": model.state_dict()}, path)
    return path


def test_vocals_are_removed_before_captioning_and_encoding(
    tmp_path, tiny_model_dir, model, truth_corpus, cache, tiny_demucs, monkeypatch
):
    import torch
    from demucs.apply import apply_model
    from demucs.states import load_model

    from musicgen_lora.audio.io import decode_audio, resample
    from musicgen_lora.models.codec import encode_clip

    source, _ = truth_corpus
    folder = tmp_path / "song"
    folder.mkdir()
    audio, sr = decode_audio(str(source / "clip_003.wav"))
    sf.write(folder / "song.wav", audio[:, : 2 * sr].T, sr)  # 2 s
    (folder / "song.txt").write_text("rock")
    split = prepare(tmp_path, tiny_model_dir, model, folder, cache, "--demucs_model_path", str(tiny_demucs))
    # by hand: standardise, separate at 44.1 kHz stereo without random shifts, sum every stem but the vocals
    separator = load_model(tiny_demucs).eval()
    wav = torch.from_numpy(resample(np.repeat(audio[:, : 2 * sr], 2, axis=0), sr, 44100))
    mean, std = wav.mean(0).mean(), wav.mean(0).std()
    with torch.no_grad():
        stems = apply_model(separator, ((wav - mean) / std)[None], shifts=0, split=True, overlap=0.25)[0]
    expected = (stems[[0, 1, 2]].sum(0) * std + mean).numpy()  # drums, bass, other
    (instrumental,) = (cache / "instrumental").glob("song-*.flac")
    stored, rate = sf.read(instrumental, dtype="float32", always_2d=True)
    assert rate == 44100 and np.abs(stored.T - np.clip(expected, -1, 1)).max() < 1e-5  # 24-bit FLAC
    assert not np.allclose(stored.T, wav.numpy(), atol=1e-2)  # something was taken out
    # EnCodec encoded the instrumental (mono at the codec's rate), and the caption is the track's own
    codec_audio = resample(stored.T.mean(axis=0, keepdims=True), 44100, 32000)
    assert split["codes"][0] == encode_clip(model.audio_encoder.eval(), codec_audio).tolist()
    assert split["text"] == ["rock"]
    # a second run separates nothing: the instrumental comes from the cache
    monkeypatch.setattr("musicgen_lora.prepare.vocals.VocalRemover.separate", _boom)
    assert (
        prepare(tmp_path, tiny_model_dir, model, folder, cache, "--demucs_model_path", str(tiny_demucs))["codes"]
        == split["codes"]
    )


def test_demucs_errors_are_one_line(tmp_path, monkeypatch):
    with pytest.raises(UserError, match="demucs_model_path '.*missing.th' is not a Demucs checkpoint"):
        _parse(tmp_path, "--demucs_model_path", str(tmp_path / "missing.th"))
    checkpoint = tmp_path / "model.th"
    checkpoint.write_bytes(b"weights")
    monkeypatch.setitem(sys.modules, "demucs.apply", None)  # as if demucs were not installed
    with pytest.raises(UserError, match=r"needs the demucs package.*pip install demucs==4\.1\.0"):
        _parse(tmp_path, "--demucs_model_path", str(checkpoint))
