"""The phantom's harder-patient options as benchmark command-line flags, shared by the benchmarks.

``--lesions``, ``--small-lesions``, ``--low-contrast``, ``--near-organs``, ``--split-neighbours`` map to the keyword
arguments of
``LesionResponseLib.phantom.simulate_patient`` / ``generate_patient`` (``phantom.lesions.LesionOptions``).
"""

from __future__ import annotations

import argparse


def add_phantom_options(parser: argparse.ArgumentParser) -> None:
    """Add the harder-patient flags to ``parser``."""
    parser.add_argument("--lesions", type=int, help="phantom option: number of lesions (default: 12-40 from the seed)")
    parser.add_argument("--small-lesions", action="store_true", help="phantom option: lesions of 0.1-4 mL")
    parser.add_argument("--low-contrast", action="store_true", help="phantom option: lesion SUVmean 6-18")
    parser.add_argument("--near-organs", type=float, default=0.0,
                        help="phantom option: fraction of lesions 2-6 mm from a hot organ")
    parser.add_argument("--split-neighbours", type=lambda text: tuple(float(v) for v in text.split(",")), default=(),
                        help="phantom option: comma-separated centre distances (mm); per distance one more splitting "
                             "liver lesion with a stable neighbour that far away, e.g. 24,30,36")


def phantom_options(args: argparse.Namespace) -> dict:
    """``simulate_patient`` keyword arguments of the parsed flags (all of them; defaults included)."""
    return {"n_lesions": args.lesions, "small_lesions": args.small_lesions, "low_contrast": args.low_contrast,
            "near_organs": args.near_organs, "split_neighbours": tuple(args.split_neighbours)}


def options_key(options: dict) -> list[str]:
    """``name-value`` of every option that differs from the phantom's default, sorted: a folder-name part."""
    return [f"{k}-{'_'.join(f'{d:g}' for d in v) if isinstance(v, tuple) else v}" for k, v in sorted(options.items())
            if v not in (None, False, 0.0, ())]
