"""Start-up cost of the commands: ``python finetune_musicgen.py --help``, ``musicgen-lora --help`` and a 1-step run.

Each command runs ``--repeat`` times in a fresh interpreter; the wall time and the CPU time (user + system, of the
child process) of each run are recorded, and once more under ``python -X importtime`` to count the modules it
imported (all of them, and the project's own). CPU time and module counts hardly depend on what else runs on the
machine; wall time does (see bench/RESULTS.md: its two vCPUs share their host).

The 1-step run trains a tiny random MusicGen (``python -m musicgen_lora.tiny``) on a 4-clip synthetic corpus for one
optimizer step, after one untimed run that prepared the data: the timed runs reuse it, as a user's second run does.

    python bench/startup.py [--repeat 5] [--out bench/startup.json]
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


def measure(name: str, argv: list[str], cwd: Path, repeat: int) -> dict:
    runs = [timed(argv, cwd) for _ in range(repeat)]
    walls, cpus = [w for w, _ in runs], [c for _, c in runs]
    result = {
        "command": " ".join(argv[1:]),
        "wall_s": {"median": statistics.median(walls), "min": min(walls), "runs": walls},
        "cpu_s": {"median": statistics.median(cpus), "min": min(cpus), "runs": cpus},
        "modules": imported_modules(argv, cwd),
    }
    print(
        f"{name:<22} wall median {result['wall_s']['median']:6.2f} s (min {result['wall_s']['min']:6.2f})  "
        f"CPU median {result['cpu_s']['median']:6.2f} s (min {result['cpu_s']['min']:6.2f})  "
        f"modules {result['modules']['all']} ({result['modules']['musicgen_lora']} of musicgen_lora)",
        flush=True,
    )
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python bench/startup.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs of each command (default 5)")
    parser.add_argument("--out", default=None, help="write the figures to this JSON file")
    args = parser.parse_args(argv)
    python = sys.executable
    results: dict = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}",
        "load_average_before": os.getloadavg(),
    }
    for name, command in (("finetune --help", ["finetune_musicgen.py", "--help"]),
                          ("musicgen-lora --help", ["-m", "musicgen_lora", "--help"])):  # fmt: skip
        results[name] = measure(name, [python, *command], ROOT, args.repeat)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        subprocess.run([python, "-m", "musicgen_lora.tiny", str(work / "model")], cwd=ROOT, check=True,
                       capture_output=True)  # fmt: skip
        subprocess.run([python, "-m", "musicgen_lora.synth", str(work / "corpus"), "--clips", "4", "--seconds", "4"],
                       cwd=ROOT, check=True, capture_output=True)  # fmt: skip
        one_step = [
            python, str(ROOT / "finetune_musicgen.py"), "--model_name_or_path", str(work / "model"),
            "--dataset_name", str(work / "corpus"), "--output_dir", str(work / "run"), "--data_cache_dir",
            str(work / "cache"), "--overwrite_output_dir", "true", "--max_steps", "1", "--per_device_train_batch_size",
            "2", "--save_strategy", "no", "--report_to", "none", "--max_duration_in_seconds", "2",
        ]  # fmt: skip
        timed(one_step, work)  # prepares the data once; the timed runs reuse it
        results["1-step run"] = measure("1-step run", one_step, work, args.repeat)
    results["load_average_after"] = os.getloadavg()
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    return results


if __name__ == "__main__":
    main()
