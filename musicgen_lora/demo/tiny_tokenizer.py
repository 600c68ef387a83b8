"""The caption tokenizer of the tiny MusicGen: a T5-style SentencePiece Unigram vocabulary, trained here (no
download) on an embedded corpus of music-caption words and sentences, reproducible bit for bit."""

from __future__ import annotations

import functools
import json

import numpy as np
from tokenizers import Tokenizer, decoders, pre_tokenizers, trainers
from tokenizers.models import Unigram
from transformers import T5Tokenizer

_GENRES = """
pop rock indie alternative punk metal hardcore grunge emo folk country bluegrass americana blues jazz swing
bebop fusion funk soul disco house techno trance dubstep drum and bass jungle garage breakbeat ambient
downtempo chillout lofi lo-fi hip hop hip-hop rap trap drill grime reggae dancehall dub ska afrobeat afrobeats
amapiano latin salsa bossa nova samba tango flamenco cumbia reggaeton bachata merengue classical baroque
romantic orchestral cinematic soundtrack score opera chamber minimalist experimental noise industrial
synthwave synth-pop synthpop vaporwave chiptune 8-bit electro electronic edm idm glitch shoegaze dream
psychedelic progressive post-rock math krautrock new wave gospel rnb r&b neo-soul motown doo-wop rockabilly
surf world celtic irish medieval gregorian chant k-pop j-pop city bollywood qawwali gamelan kpop jpop
""".split()


_INSTRUMENTS = """
piano electric piano rhodes wurlitzer organ hammond harpsichord synthesizer synth pad lead arpeggio arp bass
bassline sub 808 guitar acoustic electric distorted clean nylon slide steel banjo mandolin ukulele harp
violin viola cello double strings string quartet ensemble orchestra brass trumpet trombone horn french tuba
saxophone sax alto tenor clarinet flute piccolo oboe bassoon recorder harmonica accordion bagpipes sitar
tabla koto shamisen erhu kalimba marimba xylophone vibraphone glockenspiel celesta bells chimes drums drum
kit kick snare hi-hat hihat hats cymbal cymbals crash ride tom toms percussion shaker tambourine congas bongos
djembe cajon timpani claps clap handclaps snaps vocals vocal voice choir singer female male humming whistle
beatbox sampler vinyl crackle tape hiss field recording rain birds ocean waves wind noise
""".split()


_MOODS = """
happy sad melancholic melancholy uplifting energetic calm relaxing relaxed peaceful dreamy dark moody epic
heroic triumphant dramatic tense suspenseful mysterious eerie spooky haunting nostalgic romantic sensual
aggressive angry intense powerful gentle soft warm bright cheerful playful quirky funny groovy funky smooth
chill laid-back mellow hypnotic meditative spiritual ethereal atmospheric lush sparse minimal driving
bouncy catchy hopeful emotional sentimental bittersweet lonely somber serene tranquil joyful festive
""".split()


_DESCRIPTORS = """
slow fast medium tempo upbeat downbeat mid-tempo groove beat beats rhythm rhythmic syncopated swung
straight steady loop loops riff riffs melody melodic harmony harmonic chords chord progression solo
intro outro verse chorus bridge drop build-up buildup breakdown fade in out crescendo staccato legato
reverb delay echo distortion overdrive compressed sidechain filtered filter sweep lowpass highpass
analog digital vintage retro modern futuristic live studio recording mix mixed mastered stereo mono
high quality low hi-fi instrumental song track music tune piece background video game film movie trailer
commercial advertisement podcast radio party club dance workout study sleep meditation yoga coffee shop
night day morning evening summer winter autumn spring sunset sunrise city street road trip beach
with and a an the of in on for to at by from featuring heavy light deep big small short long loud quiet
simple complex layered rich thin thick wide narrow catchy hook hooks short long cover version remix edit
""".split()


_KEYS = ["C", "C#", "Db", "D", "D#", "Eb", "E", "F", "F#", "Gb", "G", "G#", "Ab", "A", "A#", "Bb", "B"]


_SENTENCE_TEMPLATES = [
    "{mood} {genre} track with {inst} and {inst2}",
    "a {mood} {genre} song featuring {inst}, {inst2} and {inst3}",
    "{genre} beat with {inst} at {bpm} bpm in {key} {mode}",
    "{tempo} {mood} {genre} with {inst}",
    "An {mood} {genre} piece in {key} {mode}, {bpm} BPM",
    "{mood} and {mood2} {genre} music for {use}",
    "{inst} solo, {mood}, {tempo} tempo, {key} {mode}",
    "80s {genre} with {inst} and {inst2}, {mood} vibe",
    "{genre} {inst} loop, {bpm} bpm",
    "The {inst} plays a {mood} melody over {inst2}",
]


_USES = ["studying", "sleep", "a video game", "a film trailer", "a party", "workout", "meditation", "a podcast"]


def _caption_corpus() -> list[str]:
    """A deterministic list of music-caption-like lines used to train the tiny tokenizer."""
    rng = np.random.default_rng(1234)  # independent of the model seed: the tokenizer never changes
    lines = [" ".join(_GENRES), " ".join(_INSTRUMENTS), " ".join(_MOODS), " ".join(_DESCRIPTORS)]
    lines += [" ".join(w.capitalize() for w in words) for words in (_GENRES, _INSTRUMENTS, _MOODS)]
    lines += [f"{bpm} bpm {bpm}bpm {bpm} BPM" for bpm in range(40, 201)]
    lines += [f"{k} {m} key of {k} {m} in {k}{'m' if m == 'minor' else ''}" for k in _KEYS for m in ("major", "minor")]
    lines += [f"{y}s {y} {y}'s" for y in (50, 60, 70, 80, 90)] + ["1950s 1960s 1970s 1980s 1990s 2000s 2010s"]
    words = {"genre": _GENRES, "inst": _INSTRUMENTS, "mood": _MOODS, "use": _USES}
    tempos = ["slow", "fast", "medium", "moderate", "upbeat", "mid"]
    for _ in range(1500):
        tpl = _SENTENCE_TEMPLATES[rng.integers(len(_SENTENCE_TEMPLATES))]
        fill = {
            "genre": rng.choice(words["genre"]),
            "inst": rng.choice(words["inst"]),
            "inst2": rng.choice(words["inst"]),
            "inst3": rng.choice(words["inst"]),
            "mood": rng.choice(words["mood"]),
            "mood2": rng.choice(words["mood"]),
            "use": rng.choice(words["use"]),
            "bpm": int(rng.integers(40, 201)),
            "key": rng.choice(_KEYS),
            "mode": rng.choice(["major", "minor"]),
            "tempo": rng.choice(tempos),
        }
        line = tpl.format(**fill)
        lines.append(line[0].upper() + line[1:] if rng.random() < 0.5 else line)
    # make sure every printable ASCII character is a piece, so arbitrary English never hits <unk>
    printable = "".join(chr(c) for c in range(33, 127))
    lines += [printable, " ".join(printable)] * 3
    return lines


def _canonical_pieces(pieces: list[tuple[str, float]]) -> list[tuple[str, float]]:
    """Make the trainer's output reproducible bit for bit.

    ``tokenizers``' UnigramTrainer is not deterministic run to run: its parallel EM leaves ~1e-15 noise in
    the scores (so near-equal pieces swap places), and the "required characters" it appends last (scores
    decreasing by exactly 1e-4) come out in hash-set order. Sort that tail by character and re-score it,
    round the other scores and sort them (ties by piece).
    """
    tail = 1
    while (
        tail < len(pieces)
        and len(pieces[-tail - 1][0]) == 1
        and abs((pieces[-tail - 1][1] - pieces[-tail][1]) - 1e-4) < 1e-7
    ):
        tail += 1
    head, req = pieces[: len(pieces) - tail], pieces[len(pieces) - tail :]
    top = round(req[0][1], 4)
    req = [(p, round(top - 1e-4 * i, 4)) for i, p in enumerate(sorted(p for p, _ in req))]
    head = sorted(((p, round(sc, 4)) for p, sc in head), key=lambda ps: (-ps[1], ps[0]))
    return head + req


@functools.lru_cache(maxsize=4)
def _trained_vocab(vocab_size: int) -> tuple[tuple[str, float], ...]:
    """The (piece, score) list of the tiny tokenizer; trained once per process and vocabulary size."""
    specials = ["<pad>", "</s>", "<unk>"]
    backend = Tokenizer(Unigram())
    # same pre-tokenisation as transformers' T5Tokenizer, so the pieces match what it will produce
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")]
    )
    backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        unk_token="<unk>",
        initial_alphabet=[chr(c) for c in range(33, 127)] + ["▁"],
        max_piece_length=16,
        show_progress=False,
    )
    backend.train_from_iterator(_caption_corpus(), trainer=trainer)
    vocab = [(piece, float(score)) for piece, score in json.loads(backend.to_str())["model"]["vocab"]]
    if [p for p, _ in vocab[:3]] != specials:
        raise RuntimeError(f"unexpected special token layout: {vocab[:3]}")
    return tuple([(p, 0.0) for p in specials] + _canonical_pieces(vocab[3:]))


def build_tiny_tokenizer(vocab_size: int = 800) -> T5Tokenizer:
    """Train a small T5-style (SentencePiece Unigram) tokenizer on the embedded caption corpus.

    Returns a ``transformers.T5Tokenizer`` (in transformers 5 this is the ``tokenizers``-backed class;
    ``T5TokenizerFast`` is an alias of it) with ``<pad>``=0, ``</s>``=1, ``<unk>``=2 like T5 and no
    sentinel (``<extra_id_*>``) tokens. The training runs once per process; every call returns a new object.
    """
    return T5Tokenizer(vocab=list(_trained_vocab(vocab_size)), extra_ids=0, model_max_length=512)
