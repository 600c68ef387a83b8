"""The memorisation check: the code index and copy score, the melodic similarity, and the end-to-end claims (an
adapter that memorised one clip scores >= 0.8 on it, the base model and an adapter trained normally score low),
in training (samples, warning, model card) and in evaluate.py (metrics, per-clip records, report)."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from pathlib import Path

import datasets
import numpy as np
import pytest
import soundfile as sf

from evaluate import main as evaluate_main
from finetune_musicgen import main as finetune_main
from musicgen_lora.bench.memorisation import run_benchmark
from musicgen_lora.config.arguments import MusicgenTrainingArguments
from musicgen_lora.demo.composition import midi_to_hz
from musicgen_lora.demo.instruments import TIMBRES
from musicgen_lora.demo.synth import synthesize_corpus
from musicgen_lora.errors import UserError
from musicgen_lora.hub.card import MEMORISATION_FILE
from musicgen_lora.memorisation.melody import DEFAULT_MELODY_THRESHOLD, MelodyIndex, chroma_features
from musicgen_lora.train.copy_score import DEFAULT_COPY_THRESHOLD, DEFAULT_MAX_GAP_FRAMES, CodeIndex

from ..conftest import RATE, base_argv


@pytest.fixture(scope="module")
def training() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 2048, (4, n)).astype(np.int16) for n in (300, 500, 200)]


@pytest.fixture(scope="module")
def index(training) -> CodeIndex:
    return CodeIndex(training, sources=["a.wav", "b.wav", "c.wav"], offsets_seconds=[0.0, 10.0, 0.0])


# ----------------------------------------------------------------------------------------------- the code index


def test_an_exact_copy_scores_one_and_names_the_file_and_the_offset(training, index):
    match = index.match(training[1][:, 120:220])
    assert match.score == 1.0 and match.exact_score == 1.0
    assert (match.example, match.source) == (1, "b.wav")
    assert match.offset_seconds == pytest.approx(10.0 + 120 / 50)  # the chunk's offset in its file + the frames
    record = match.record()
    assert record["copy_training_file"] == "b.wav" and record["copy_offset_seconds"] == pytest.approx(12.4)


def test_a_copy_inside_a_new_clip_scores_its_share_and_says_where_it_starts(training, index):
    rng = np.random.default_rng(1)
    clip = np.concatenate(
        [rng.integers(0, 2048, (4, 50)), training[2][:, 30:130], rng.integers(0, 2048, (4, 50))], axis=1
    )
    match = index.match(clip)
    assert match.score == pytest.approx(0.5) and match.source == "c.wav"
    assert match.clip_start_frame == 50 and match.train_start_frame == 30 and match.span_frames == 100


def test_isolated_differences_keep_the_copy_score_but_break_the_verbatim_run(training, index):
    clip = training[0][:, :100].copy()
    clip[2, 5::10] += 1  # one codebook of every tenth frame differs (a sampled token off the memorised path)
    match = index.match(clip)
    assert match.score == pytest.approx(0.9) and match.exact_score <= 0.1
    assert match.source == "a.wav" and match.train_start_frame == 0
    # a stretch of differing frames longer than max_gap_frames splits the copy: the larger part counts
    clip = training[0][:, :100].copy()
    clip[0, 60 : 60 + DEFAULT_MAX_GAP_FRAMES + 1] += 1
    assert index.match(clip).score == pytest.approx(0.6)


def test_unrelated_and_shuffled_clips_score_low(training, index):
    rng = np.random.default_rng(2)
    assert index.match(rng.integers(0, 2048, (4, 100))).score == 0.0
    unrelated = index.match(rng.integers(0, 2048, (4, 100)))
    assert unrelated.example is None and unrelated.record()["copy_offset_seconds"] is None
    excerpt = training[1][:, :200]
    assert index.match(excerpt[:, rng.permutation(200)]).score == 0.0  # every frame from training, in another order
    bars = np.arange(200).reshape(10, 20)[rng.permutation(10)].ravel()  # 20-frame bars in another order
    shuffled = index.match(excerpt[:, bars])
    assert shuffled.score < DEFAULT_COPY_THRESHOLD and shuffled.score == shuffled.exact_score  # no bar joins another


def test_silence_is_no_copy_but_does_not_split_one():
    rng = np.random.default_rng(3)
    silence = np.zeros((4, 100), dtype=np.int16)  # digital silence: one frame repeated
    song = np.concatenate([rng.integers(0, 2048, (4, 100)), silence, rng.integers(0, 2048, (4, 100))], axis=1)
    index = CodeIndex([song])
    assert index.match(silence).score == 0.0
    copy = song.copy()
    copy[1, 110:190:5] = 7  # 16 differing frames inside the silence, never more than max_gap_frames in a row
    match = index.match(copy)
    assert match.score == pytest.approx(284 / 300) and match.span_frames == 300


def test_material_repeated_more_than_max_occurrences_is_still_found():
    rng = np.random.default_rng(4)
    loop = rng.integers(0, 2048, (4, 50))
    index = CodeIndex([np.tile(loop, 100)], max_occurrences=8)  # a one-bar loop, 100 times
    assert len(index.keys) == 8 * 50  # each shingle kept at its first 8 places
    match = index.match(np.tile(loop, 3))
    assert match.score == 1.0 and match.train_start_frame == 0


def test_the_index_reads_a_prepared_split_with_or_without_sources(training):
    rows = {"codes": [t.tolist() for t in training], "text": ["x"] * 3}
    plain = datasets.Dataset.from_dict(rows)
    index = CodeIndex.from_dataset(plain, limit=2)  # as max_train_samples: the first rows
    assert len(index) == 2 and index.match(training[2][:, :50]).score == 0.0
    match = index.match(training[1][:, :50])
    assert match.example == 1 and match.source is None  # no source column: the row index is reported
    chunked = datasets.Dataset.from_dict(
        {**rows, "source": ["a.wav", "b.wav", "c.wav"], "offset_seconds": [0.0, 10.0, 0.0]}
    )
    index = CodeIndex.from_dataset(chunked.select([2, 1]))  # a selection: its rows, in its order
    match = index.match(training[1][:, 100:150])
    assert (match.example, match.source, match.offset_seconds) == (1, "b.wav", pytest.approx(12.0))


def test_stereo_codes_and_the_first_codebook_alone(training):
    stereo = [np.concatenate([t, t[::-1]], axis=0) for t in training]  # 8 interleaved codebooks
    index = CodeIndex(stereo)
    assert index.match(stereo[0][:, 10:60]).score == 1.0
    first = CodeIndex(training, codebooks=1)
    clip = training[0][:, :50].copy()
    clip[1:] = 0  # the finer codebooks differ everywhere
    assert first.match(clip).score == 1.0 and CodeIndex(training).match(clip).score == 0.0
    with pytest.raises(ValueError, match="K=4"):
        CodeIndex(training).match(stereo[0])


# ------------------------------------------------------------------------------------------------- the melody

SCALE = (0, 2, 4, 5, 7, 9, 11)
CHORDS = [(48, 52, 55), (45, 48, 52), (41, 45, 48), (43, 47, 50)]  # C, Am, F, G: every tune here shares them
STEP = 0.25  # eighth notes at 120 bpm


def tune(rng: np.random.Generator, notes: int = 24) -> list[int]:
    """A random-walk melody in C major (MIDI notes)."""
    degrees = np.cumsum(rng.integers(-2, 3, notes))
    return [60 + 12 * (d // 7) + SCALE[d % 7] for d in degrees]


def play(melody: list[int], timbre: str, shift: int = 0, chords: bool = False) -> np.ndarray:
    """The melody on one of the synthetic corpus' instruments, optionally over the chords on a pad."""
    total = int((len(melody) * STEP + 0.5) * RATE)
    out = np.zeros(total, dtype=np.float32)
    parts = [(i * STEP, m, timbre, STEP, 1.0) for i, m in enumerate(melody)]
    if chords:
        parts += [(2.0 * i, m, "analog pad", 2.0, 0.3) for i, chord in enumerate(CHORDS * 2) for m in chord]
    for start, midi, voice, seconds, gain in parts:
        sound = TIMBRES[voice](midi_to_hz(midi + shift), int(seconds * RATE), RATE)
        begin = int(start * RATE)
        if begin < total:
            out[begin : begin + len(sound)] += gain * sound[: total - begin]
    return 0.5 * out / np.abs(out).max()


@pytest.fixture(scope="module")
def melodies() -> dict:
    """Four tunes on the piano over the chords, each after a 2.5 s phrase of another tune, as training audio."""
    rng = np.random.default_rng(0)
    tunes = [tune(rng) for _ in range(4)]
    index = MelodyIndex()
    for number, melody in enumerate(tunes):
        audio = np.concatenate([play(tune(rng, 8), "electric piano"), play(melody, "piano", chords=True)])
        index.add(audio, RATE, source=f"song{number}.wav", offset_seconds=60.0)
    return {"tunes": tunes, "index": index}


@pytest.mark.parametrize("timbre", ["square synth", "distorted guitar", "nylon guitar"])
def test_a_tune_replayed_on_another_instrument_is_found_where_it_is(melodies, timbre):
    for number in range(2):
        excerpt = melodies["tunes"][number][4:20]  # 4 s from its fifth note, without the chords
        match = melodies["index"].match(play(excerpt, timbre), RATE)
        assert match.similarity >= 0.8 > DEFAULT_MELODY_THRESHOLD
        assert match.source == f"song{number}.wav" and match.transposition == 0
        assert match.offset_seconds == pytest.approx(60.0 + 2.5 + 4 * STEP, abs=0.11)  # one chroma frame


def test_a_transposed_tune_is_found_with_its_transposition(melodies):
    match = melodies["index"].match(play(melodies["tunes"][2][4:20], "saw synth", shift=3), RATE)
    assert match.similarity >= 0.8 and match.source == "song2.wav" and match.transposition == -3
    assert match.record()["melody_transposition"] == -3
    fixed = MelodyIndex(transpose=False)  # without transpositions the same clip is not found
    for chroma in melodies["index"].chroma:
        fixed.add_chroma(chroma)
    assert (
        fixed.match(play(melodies["tunes"][2][4:20], "saw synth", shift=3), RATE).similarity < DEFAULT_MELODY_THRESHOLD
    )


def test_other_tunes_over_the_same_chords_score_low(melodies):
    scores = [
        melodies["index"].match(play(tune(np.random.default_rng(100 + j)), timbre, chords=j % 2 == 1), RATE).similarity
        for j, timbre in enumerate(["piano", "square synth", "nylon guitar", "saw synth"])
    ]
    assert max(scores) < 0.5 < DEFAULT_MELODY_THRESHOLD


def test_silence_and_a_steady_tone_carry_no_tune(melodies):
    t = np.arange(2 * RATE) / RATE
    for audio in (np.zeros(2 * RATE), 0.3 * np.sin(2 * np.pi * 440 * t)):
        match = melodies["index"].match(audio, RATE)
        assert match.similarity == 0.0 and match.example is None
    assert chroma_features(np.zeros(100), RATE).shape == (0, 12)  # shorter than one analysis window


# --------------------------------------------------------------------------------------------- the benchmark


def test_the_benchmark_separates_copies_from_remixes_and_new_music():
    result = run_benchmark(hours=0.1, clips=9, repeat=1, melody=True)
    kinds = result["copy_score_by_kind"]
    assert kinds["copy"]["min"] >= 0.8 and kinds["new"]["max"] == 0.0 and kinds["remix"]["max"] < kinds["copy"]["min"]
    assert result["build"]["best_s"] > 0 and result["query_all_clips"]["best_s"] > 0 and result["index_mb"] > 0
    assert result["melody"]["query_all_clips_one_length"]["best_s"] > 0


# -------------------------------------------------------------------------------------------------- end to end


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def memorised_run(tiny_model_dir, data_cache_dir, tmp_path_factory) -> dict:
    """The real script trains the tiny model on ONE 1.5 s clip until it reproduces it, rendering samples every 40
    steps; chunking gives the prepared data its source column."""
    corpus = tmp_path_factory.mktemp("one-clip")
    caption = synthesize_corpus(corpus, clips=1, seconds=1.5, seed=3)[0]["text"]
    output_dir = tmp_path_factory.mktemp("runs") / "memorised"
    argv = base_argv(tiny_model_dir, corpus, output_dir, data_cache_dir) + [
        "--chunk_long_tracks",
        "true",
        "--max_steps",
        "120",
        "--learning_rate",
        "1e-2",
        "--lr_scheduler_type",
        "constant",
        "--warmup_steps",
        "0",
        "--per_device_train_batch_size",
        "1",
        "--lora_dropout",
        "0",
        "--text_dropout_prob",
        "0",
        "--logging_steps",
        "40",
        "--sample_prompts",
        caption,
        "jazz trio, brushes",
        "--sample_every_steps",
        "40",
        "--sample_duration_in_seconds",
        "1",
    ]
    handler = _Records()
    logging.getLogger("musicgen_lora").addHandler(handler)
    try:
        result = finetune_main(argv)
    finally:
        logging.getLogger("musicgen_lora").removeHandler(handler)
    return {**result, "caption": caption, "warnings": handler.messages, "corpus": corpus}


def test_training_logs_each_renders_copy_score_and_warns_at_the_step_it_crosses(memorised_run):
    logged = [(r["step"], r["samples/copy_score"]) for r in memorised_run["log_history"] if "samples/copy_score" in r]
    assert [step for step, _ in logged] == [0, 40, 80, 120, 120]  # base, step-40, -80, -120, final
    assert logged[0][1] == 0.0  # the base model copies nothing
    assert logged[-1][1] >= 0.8  # the final samples are copies
    check = json.loads((Path(memorised_run["output_dir"]) / MEMORISATION_FILE).read_text())
    first = check["first_step_at_threshold"]
    assert first == next(step for step, score in logged[1:] if score >= DEFAULT_COPY_THRESHOLD)
    warning = next(m for m in memorised_run["warnings"] if m.startswith("Memorisation at step"))
    assert f"step {first}:" in warning and "clip_000.wav" in warning and "copy_threshold 0.50" in warning
    assert check["final"]["copy_score"] == logged[-1][1] and check["final"]["copies"] >= 1
    card = (Path(memorised_run["output_dir"]) / "README.md").read_text()
    assert f"Copy score of the final samples: **{check['final']['copy_score']:.2f}**" in card


def test_an_adapter_trained_normally_on_many_clips_scores_low(trained_run):
    """conftest's run: 4 clips, 40 steps at an ordinary learning rate, samples rendered before and after."""
    check = json.loads((Path(trained_run["output_dir"]) / MEMORISATION_FILE).read_text())
    assert (
        check["final"]["samples"] == 2
        and check["final"]["copy_score"] < 0.2
        and check["first_step_at_threshold"] is None
    )
    assert all(r["copy_score"] < 0.2 for r in check["renders"])


@pytest.fixture(scope="module")
def memorised_evaluation(memorised_run, tmp_path_factory) -> dict:
    run = tmp_path_factory.mktemp("eval-run") / "run"
    shutil.copytree(memorised_run["output_dir"], run, ignore=shutil.ignore_patterns("samples"))
    # 2 prompts x 4 samples: 8 clip pairs, the fewest for which the comparison calls a change
    return evaluate_main(["--config", str(run), "--duration", "1", "--num_samples", "4", "--max_eval_samples", "1"])


def test_evaluate_flags_the_memorised_clip_and_names_the_copied_file(memorised_evaluation, memorised_run):
    metrics, records = memorised_evaluation["metrics"], memorised_evaluation["records"]
    final, base = metrics["models"]["final"]["memorisation"], metrics["models"]["base"]["memorisation"]
    assert final["copy_score"] >= 0.8 and final["copies"] >= 2 and final["copy_threshold"] == DEFAULT_COPY_THRESHOLD
    assert base["copy_score"] < 0.2 and base["copies"] == 0 and base["copy_score_mean"] < 0.2
    assert final["copy_score_mean"] <= final["copy_score"] and "melody_similarity" in final
    caption = [r for r in records if r["model"] == "final" and r["prompt"] == memorised_run["caption"]]
    assert len(caption) == 4
    for record in caption:
        assert record["copy_score"] >= 0.8 and record["copy"] and record["copy_kind"] == "codes"
        assert record["copy_training_file"].endswith("clip_000.wav") and record["copy_offset_seconds"] == 0.0
        excerpt, rate = sf.read(Path(memorised_evaluation["output_dir"]) / record["copy_excerpt"])
        assert rate == RATE and len(excerpt) == pytest.approx(record["copy_span_seconds"] * RATE, abs=RATE // 50)
    lines = [
        json.loads(x)
        for x in (Path(memorised_evaluation["output_dir"]) / "comparison_results.jsonl").read_text().splitlines()
    ]
    assert [x["copy_score"] for x in lines] == [r["copy_score"] for r in records]
    assert all("copy_excerpt" not in r for r in records if r["model"] == "base")


def test_the_comparison_shows_the_memorised_clip_as_a_change(memorised_evaluation):
    """The adapter that memorised a clip, against the base: copy score up and per-song FAD to the training files
    down, both with intervals that exclude zero, and said so in the verdict."""
    block = memorised_evaluation["metrics"]["comparison"]["final"]
    copy, song = block["metrics"]["copy_score"], block["metrics"]["per_song_fad"]
    assert copy["changed"] and copy["verdict"] == "worse" and copy["ci95"][0] > 0.3
    assert song["changed"] and song["relative_ci95"][1] < 0
    assert "copies more of the training music: copy score +" in block["verdict"]
    assert "closer to the training music: per-song FAD" in block["verdict"]
    assert not block["verdict"].startswith("no detectable change")


@pytest.fixture(scope="module")
def hub_dataset_stand_in(memorised_run, tmp_path_factory, monkeypatch_module) -> str:
    """The fake Hub of tests/hub serves uploads only, not downloads: a local ``datasets`` dataset saved to disk
    stands in for a Hub dataset, as ``datasets.load_dataset`` would return it (audio files in a download cache)."""
    cache = tmp_path_factory.mktemp("hub-cache") / "datasets--someone--my-songs" / "snapshots" / "abc123" / "data"
    cache.mkdir(parents=True)
    shutil.copy(memorised_run["corpus"] / "clip_000.wav", cache / "clip_000.wav")
    saved = cache.parent / "saved"  # saved with the audio bytes inside, as a Hub dataset's parquet holds them
    rows = {"audio": [str(cache / "clip_000.wav")], "text": [memorised_run["caption"]]}
    datasets.Dataset.from_dict(rows).cast_column("audio", datasets.Audio(decode=False)).save_to_disk(saved)
    real = datasets.load_dataset

    def load_dataset(name, *args, **kwargs):
        return datasets.load_from_disk(str(saved)) if name == "someone/my-songs" else real(name, *args, **kwargs)

    monkeypatch_module.setattr(datasets, "load_dataset", load_dataset)
    return "someone/my-songs"


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.mark.slow
@pytest.mark.parametrize("form", ["run", "prepared folder", "raw folder", "Hub dataset id"])
def test_memorisation_names_the_training_file_for_every_train_dataset_form(form, memorised_run, tiny_model_dir,
                                                                           hub_dataset_stand_in, tmp_path):  # fmt: skip
    """Issue 27 item 5: copy_training_file and the report name the file as the dataset names it, whatever form
    --train_dataset takes. The raw folder is also evaluated with --copy_threshold 0 (TB7 of the new user's
    afternoon: a TypeError before), which flags the copying clip and not the base model's."""
    run = Path(memorised_run["output_dir"])
    forms = {"run": run, "prepared folder": run / "prepared_data", "raw folder": memorised_run["corpus"]}
    source = str(forms[form]) if form in forms else hub_dataset_stand_in
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps([memorised_run["caption"]]))
    extra = ["--copy_threshold", "0"] if form == "raw folder" else []
    result = evaluate_main([
        "--base_model", str(tiny_model_dir), "--model", f"final={run}", "--prompts", str(prompts), "--duration", "1",
        "--num_samples", "1", "--skip_melody", "--train_dataset", source, "--output_dir", str(tmp_path / "eval"),
        "--bootstrap_resamples", "100", *extra,
    ])  # fmt: skip
    (copying,) = [r for r in result["records"] if r["model"] == "final"]
    (base,) = [r for r in result["records"] if r["model"] == "base"]
    assert copying["copy"] and copying["copy_score"] >= 0.8 and copying["copy_training_file"] == "clip_000.wav"
    assert not base["copy"] and "copy_excerpt" not in base
    page = (tmp_path / "eval" / "report.html").read_text()
    assert f"copies {100 * copying['copy_score']:.0f} % of clip_000.wav from" in page
    assert "training example" not in page
    line = json.loads((tmp_path / "eval" / "comparison_results.jsonl").read_text().splitlines()[1])
    assert line["model"] == "final" and line["copy_training_file"] == "clip_000.wav"


def test_the_report_puts_a_badge_and_the_training_excerpt_beside_a_copying_clip(memorised_evaluation):
    page = (Path(memorised_evaluation["output_dir"]) / "report.html").read_text()
    flagged = [r for r in memorised_evaluation["records"] if r.get("copy")]
    assert page.count('class="copy-badge"') == len(flagged) > 0
    for record in flagged:
        assert f'<audio class="excerpt" controls preload="metadata" src="{record["copy_excerpt"]}">' in page
    assert "clips flagged as copies (copy score &gt;= 0.5)" in page


def test_thresholds_are_checked_and_training_uses_the_same_default(tmp_path):
    defaults = {f.name: f.default for f in dataclasses.fields(MusicgenTrainingArguments)}
    assert defaults["copy_threshold"] == DEFAULT_COPY_THRESHOLD
    prompts = tmp_path / "p.json"
    prompts.write_text('["jazz"]')
    argv = ["--base_model", "x", "--prompts", str(prompts), "--output_dir", str(tmp_path)]
    with pytest.raises(SystemExit) as stopped:
        evaluate_main([*argv, "--copy_threshold", "1.5"])
    assert stopped.value.code == 2
    with pytest.raises(UserError, match="--melody_threshold must be between 0 and 1, got -1"):
        evaluate_main([*argv, "--melody_threshold", "-1", "--debug"])
