"""Start-up cost of the commands: ``python finetune_musicgen.py --help``, ``musicgen-lora --help`` and a 1-step run.

Each command runs ``--repeat`` times in a fresh interpreter; the wall time and the CPU time (user + system, of the
child process) of each run are recorded, and once more under ``python -X importtime`` to count the modules it
imported (all of them, and the project's own). With several checkouts (``--trees BEFORE AFTER``) the runs alternate
between them, so that both see the same machine: on this shared 2-core VM the load changes from minute to minute
(bench/RESULTS.md), and even the CPU time of a start-up grows by a quarter under heavy load. The project's module
count is exact; the total count varies by a few percent from run to run (libraries import some modules lazily).

The 1-step run trains a tiny random MusicGen (``python -m musicgen_lora.tiny``) on a 4-clip synthetic corpus for one
optimizer step, after one untimed run that prepared the data: the timed runs reuse it, as a user's second run does.

    python bench/startup.py [--trees BEFORE_CHECKOUT AFTER_CHECKOUT] [--repeat 5] [--out bench/startup.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed(argv: list[str], cwd: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one run of ``argv``; raises if it fails."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def imported_modules(argv: list[str], cwd: Path) -> dict[str, int]:
    """How many modules a run imports, in all and of ``musicgen_lora``."""
    done = subprocess.run([sys.executable, "-X", "importtime", *argv[1:]], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr[-2000:]}")
    names = [line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")]
    names = [name for name in names if name != "imported package"]  # the header line
    return {"all": len(names), "musicgen_lora": sum(name.startswith("musicgen_lora") for name in names)}


def commands(tree: Path, work: Path) -> dict[str, tuple[list[str], Path]]:
    """The measured command lines of one checkout (and the folder each runs in)."""
    python = sys.executable
    one_step = [
        python, str(tree / "finetune_musicgen.py"), "--model_name_or_path", str(work / "model"),
        "--dataset_name", str(work / "corpus"), "--output_dir", str(work / f"run-{tree.name}"), "--data_cache_dir",
        str(work / "cache"), "--overwrite_output_dir", "true", "--max_steps", "1", "--per_device_train_batch_size",
        "2", "--save_strategy", "no", "--report_to", "none", "--max_duration_in_seconds", "2",
    ]  # fmt: skip
    return {
        "finetune --help": ([python, "finetune_musicgen.py", "--help"], tree),
        "musicgen-lora --help": ([python, "-m", "musicgen_lora", "--help"], tree),
        "1-step run": (one_step, work),
    }


def summary(runs: list[tuple[float, float]]) -> dict:
    walls, cpus = [w for w, _ in runs], [c for _, c in runs]
    return {
        "wall_s": {"median": statistics.median(walls), "min": min(walls), "runs": walls},
        "cpu_s": {"median": statistics.median(cpus), "min": min(cpus), "runs": cpus},
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python bench/startup.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--trees", nargs="+", default=[str(ROOT)], help="checkouts to compare (default: this one)")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each command in each checkout (default 5)")
    parser.add_argument("--out", default=None, help="write the figures to this JSON file")
    args = parser.parse_args(argv)
    trees = [Path(tree).resolve() for tree in args.trees]
    results: dict = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}",
        "load_average_before": os.getloadavg(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        subprocess.run([sys.executable, "-m", "musicgen_lora.tiny", str(work / "model")], cwd=trees[0], check=True,
                       capture_output=True)  # fmt: skip
        subprocess.run([sys.executable, "-m", "musicgen_lora.synth", str(work / "corpus"), "--clips", "4",
                        "--seconds", "4"], cwd=trees[0], check=True, capture_output=True)  # fmt: skip
        plans = {tree: commands(tree, work) for tree in trees}
        for tree in trees:  # each checkout prepares its run's data once; the timed runs reuse it
            timed(*plans[tree]["1-step run"])
        for name in plans[trees[0]]:
            runs: dict[Path, list[tuple[float, float]]] = {tree: [] for tree in trees}
            for _ in range(args.repeat):
                for tree in trees:  # alternating: both see the same moments of the machine
                    runs[tree].append(timed(*plans[tree][name]))
            for tree in trees:
                result = {**summary(runs[tree]), "modules": imported_modules(*plans[tree][name])}
                results.setdefault(str(tree), {})[name] = result
                print(
                    f"{tree.name:<10} {name:<22} wall median {result['wall_s']['median']:6.2f} s (min "
                    f"{result['wall_s']['min']:6.2f})  CPU median {result['cpu_s']['median']:6.2f} s (min "
                    f"{result['cpu_s']['min']:6.2f})  modules {result['modules']['all']} "
                    f"({result['modules']['musicgen_lora']} of musicgen_lora)",
                    flush=True,
                )
    results["load_average_after"] = os.getloadavg()
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    return results


if __name__ == "__main__":
    main()
