"""Benchmark of the command line's start-up: CPU seconds (user + system, so that other load on the machine does not
count) of ``lesion-response --help`` and of each command's ``--help``, each run ``--runs`` times in a fresh
interpreter (the median is printed), and the largest imports of ``import LesionResponseLib.cli`` (``-X importtime``).

Run: ``.venv/bin/python benchmarks/bench_cli.py [--runs 5] [--commands analyze,demo]``; the library is the one on
``PYTHONPATH`` (or installed), so ``PYTHONPATH=/path/to/other/checkout`` measures another version the same way.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile


def cpu_seconds(arguments: list[str]) -> float:
    """CPU seconds (user + system) of one child process running ``python -m LesionResponseLib.cli ARGUMENTS``
    (``.cli``: older versions have no ``__main__``; run from a neutral folder, so that ``-m`` does not put the
    current checkout first on the path)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-m", "LesionResponseLib.cli", *arguments], check=True, capture_output=True,
                   cwd=tempfile.gettempdir())
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def largest_imports(count: int = 8) -> list[tuple[int, str]]:
    """(cumulative microseconds, module) of the slowest imports of ``LesionResponseLib.cli``."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", "import LesionResponseLib.cli"],
                            capture_output=True, text=True, check=True, cwd=tempfile.gettempdir())
    rows = []
    for line in result.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            rows.append((int(parts[1]), parts[2].rstrip()))
    return sorted(rows, reverse=True)[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--commands", default="analyze,cohort-analyze,demo,settings,report",
                        help="comma-separated commands whose --help is timed besides the top level")
    args = parser.parse_args()
    for command in ["", *args.commands.split(",")]:
        words = [command, "--help"] if command else ["--help"]
        times = [cpu_seconds(words) for _ in range(args.runs)]
        print(f"lesion-response {' '.join(words)}: median {statistics.median(times):.3f} CPU s "
              f"(min {min(times):.3f}, max {max(times):.3f}, {args.runs} runs)")
    print("largest imports of LesionResponseLib.cli (cumulative ms):")
    for micros, module in largest_imports():
        print(f"  {micros / 1000:8.1f}  {module}")


if __name__ == "__main__":
    main()
