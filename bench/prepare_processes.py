"""Distributed preparation's speed-up: a training run's data preparation (``load_or_prepare``, as training does it)
in 1 process vs N processes under torchrun, on a synthetic corpus, with the real 32 kHz EnCodec (random weights:
encoding costs the same) and a tiny decoder and text encoder (not run while preparing).

    PYTHONPATH=. python bench/prepare_processes.py WORKDIR [--clips 64] [--seconds 8] [--repeats 3] [--processes 2]

Each run starts from an empty cache and output folder: 1 process with torch's default threads, 1 process with 1
thread (each torchrun process' count: the codes are then identical), N processes, in turn (each repeat starts with
the next one). Printed: the
preparation's seconds (rank 0's ``load_or_prepare``, after every process finished) and the whole command's (start-up,
model loading), with the load average before each run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch.distributed as dist

from musicgen_lora.config.parsing import parse_config
from musicgen_lora.demo.synth import synthesize_corpus
from musicgen_lora.demo.tiny import build_tiny_musicgen
from musicgen_lora.demo.tiny_configs import ARCHITECTURES
from musicgen_lora.models.loading import load_model_and_processor
from musicgen_lora.prepare.pipeline import load_or_prepare

ROOT = Path(__file__).resolve().parents[1]


def worker(out: Path, argv: list[str]) -> None:
    """One process' preparation, timed; rank 0 writes the seconds to ``out``."""
    parsed = parse_config(argv)
    model, processor = load_model_and_processor(parsed.model)
    if dist.is_initialized():
        dist.barrier()  # every process loaded: time the preparation alone
    start = time.perf_counter()
    load_or_prepare(parsed, model, processor)
    if dist.is_initialized():
        dist.barrier()
    if parsed.training.process_index == 0:
        out.write_text(json.dumps(time.perf_counter() - start))


def setup(workdir: Path, clips: int, seconds: float) -> Path:
    """The model folder (real EnCodec, tiny rest) and the corpus, built once."""
    model_dir = workdir / "model"
    if not model_dir.exists():
        sizes = {**ARCHITECTURES["tiny"], "codec": ARCHITECTURES["small"]["codec"]}
        model, processor = build_tiny_musicgen(architecture=sizes, fit_codebooks=False)
        model.save_pretrained(model_dir)
        processor.save_pretrained(model_dir)
    corpus = workdir / f"corpus-{clips}x{seconds:g}s"
    if not corpus.exists():
        synthesize_corpus(corpus, clips=clips, seconds=seconds, seed=0)
    return corpus


def timed_run(workdir: Path, corpus: Path, processes: int, threads: int | None) -> dict:
    run = workdir / "run"
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir()
    argv = ["--model_name_or_path", str(workdir / "model"), "--dataset_name", str(corpus)]
    argv += ["--output_dir", str(run / "out"), "--data_cache_dir", str(run / "cache"), "--add_metadata", "true"]
    argv += ["--report_to", "none", "--disable_tqdm", "true", "--max_duration_in_seconds", "30", "--seed", "0"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    launcher = [sys.executable]
    if processes > 1:  # torchrun sets OMP_NUM_THREADS=1 in each process unless it is set
        launcher += ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
    load = Path("/proc/loadavg").read_text().split()[0]
    start = time.perf_counter()
    subprocess.run([*launcher, __file__, "--worker", str(run / "seconds.json"), *argv], check=True, env=env,
                   capture_output=True, timeout=3600)  # fmt: skip
    whole = time.perf_counter() - start
    return {"prepare_s": json.loads((run / "seconds.json").read_text()), "command_s": whole, "load": float(load)}


def main() -> None:
    if sys.argv[1:2] == ["--worker"]:
        worker(Path(sys.argv[2]), sys.argv[3:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--one_thread_only", action="store_true", help="skip 1 process with the default threads")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    corpus = setup(args.workdir, args.clips, args.seconds)
    configs = {
        "1 process": (1, None),
        "1 process, 1 thread": (1, 1),
        f"{args.processes} processes": (args.processes, None),
    }
    if args.one_thread_only:
        del configs["1 process"]
    results: dict[str, list[dict]] = {name: [] for name in configs}
    names = list(configs)
    for repeat in range(args.repeats):
        for name in names[repeat % len(names) :] + names[: repeat % len(names)]:  # each first once: no order effect
            processes, threads = configs[name]
            result = timed_run(args.workdir, corpus, processes, threads)
            results[name].append(result)
            print(f"repeat {repeat} {name}: {json.dumps(result)}", flush=True)
    audio = args.clips * args.seconds
    print(f"{args.clips} clips x {args.seconds:g} s = {audio:g} s of audio; {os.cpu_count()} CPUs")
    for name, runs in results.items():
        prep = [r["prepare_s"] for r in runs]
        command, loads = statistics.median(r["command_s"] for r in runs), [r["load"] for r in runs]
        print(f"{name}: preparation best {min(prep):.1f} s, median {statistics.median(prep):.1f} s "
              f"({audio / min(prep):.2f} audio s/s); command median {command:.1f} s; load {loads}")  # fmt: skip
    (args.workdir / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
