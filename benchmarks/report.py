"""The parent side the benchmarks share: their common options, the data folder, the alternating
rounds of their loops, the medians table, the profile runs and the sampling rounds.

Each benchmark keeps its own headline lines; only what several print the same way lives here.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from step_clock import REPO, check_same_images, load

Results = dict[str, list[dict[str, Any]]]
# a table column: header, width, result key, format spec ("first": the first round's value as is;
# key "spread": the min-max of images/s over the rounds)
Column = tuple[str, int, str, str]

THREADS: Column = ("threads", 9, "torch_threads", "first")
PEAK_RSS: Column = ("peak RSS MB", 13, "peak_rss_mb", ".0f")
# the training process's RSS at its first step and peak, and the largest finished worker's
RSS_COLUMNS: list[Column] = [
    ("RSS start MB", 14, "rss_start_mb", ".0f"),
    PEAK_RSS,
    ("worker peak MB", 16, "worker_peak_rss_mb", ".0f"),
]

PROFILE_HELP = "one more cProfiled run of each loop over the timed steps (auto: if the ratio < 1)"


def add_loop_options(
    parser: argparse.ArgumentParser, loops: tuple[str, ...], profile_help: str = PROFILE_HELP
) -> None:
    """--profile, --keep and the hidden options of a benchmark's ``--run LOOP`` child."""
    parser.add_argument(
        "--profile", choices=("auto", "always", "never"), default="auto", help=profile_help
    )
    parser.add_argument("--keep", type=Path, help="write the data here and keep it (or reuse it)")
    parser.add_argument("--run", choices=loops, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--cprofile", action="store_true", help=argparse.SUPPRESS)


def parse_loop_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    args = parser.parse_args(argv)
    if not 1 <= args.warmup < args.steps:
        parser.error("need 1 <= --warmup < --steps")
    return args


def forward(args: argparse.Namespace, names: tuple[str, ...]) -> list[str]:
    """``--name value`` for each of ``names``: the parent's settings handed to a child."""
    argv: list[str] = []
    for name in names:
        argv += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    return argv


@contextmanager
def bench_root(prefix: str, keep: Path | None) -> Iterator[Path]:
    """The data folder: ``keep`` (kept), else a temporary one removed at the end."""
    root = Path(tempfile.mkdtemp(prefix=prefix)) if keep is None else keep
    root.mkdir(parents=True, exist_ok=True)
    try:
        yield root
    finally:
        if keep is None:
            shutil.rmtree(root, ignore_errors=True)


def print_start(config: Path, shown: list[str], end: str = "") -> None:
    """The suite's config and overrides, then the load average at the start."""
    print(f"suite: {config.relative_to(REPO)} + {' '.join(shown)}")
    print(f"load average at start (1, 5, 15 min; {os.cpu_count()} CPUs): {load()}{end}", flush=True)


def alternating_rounds(
    loops: tuple[str, ...],
    rounds: int,
    one: Callable[[str], dict[str, Any]],
    seen: Callable[[int, str, dict[str, Any]], None] | None = None,
) -> Results:
    """``one(loop)`` for every loop, ``rounds`` times, the order alternating (so neither always
    runs first, on a warmer or a more loaded machine)."""
    results: Results = {loop: [] for loop in loops}
    for r in range(rounds):
        for loop in loops if r % 2 == 0 else loops[::-1]:
            res = one(loop)
            results[loop].append(res)
            if seen is not None:
                seen(r, loop, res)
    return results


def medians(results: Results) -> Callable[[str, str], float]:
    """``med(loop, key)``: the median of ``key`` over the loop's rounds."""

    def med(loop: str, key: str) -> float:
        return statistics.median(res[key] for res in results[loop])

    return med


def rate_columns(rate_width: int, spread_width: int) -> list[Column]:
    """The first columns of every training table: images/s, its min-max, the median step."""
    return [
        ("images/s", rate_width, "images_per_s", ".1f"),
        ("min-max", spread_width, "spread", ""),
        ("ms/step", 9, "median_step_ms", ".1f"),
    ]


def print_table(
    results: Results, loop_width: int, columns: list[Column], lead: str = ""
) -> Callable[[str, str], float]:
    """One row a loop of the medians over its rounds; returns ``med`` (:func:`medians`)."""
    med = medians(results)
    print(lead + f"{'loop':<{loop_width}}" + "".join(f"{h:>{w}}" for h, w, _, _ in columns))
    for loop, runs in results.items():
        cells = []
        for _, width, key, spec in columns:
            if key == "spread":
                rates = [res["images_per_s"] for res in runs]
                cells.append(f"{f'{min(rates):.1f}-{max(rates):.1f}':>{width}}")
            elif spec == "first":
                cells.append(f"{runs[0][key]:>{width}}")
            else:
                cells.append(f"{med(loop, key):>{width}{spec}}")
        print(f"{loop:<{loop_width}}" + "".join(cells))
    return med


def paired_ratios(results: Results, a: str, b: str) -> list[float]:
    """images/s of ``a`` over ``b``, round by round."""
    return [
        x["images_per_s"] / y["images_per_s"] for x, y in zip(results[a], results[b], strict=True)
    ]


def wants_profile(args: argparse.Namespace, ratio: float) -> bool:
    return args.profile == "always" or (args.profile == "auto" and ratio < 1.0)


def print_profiles(
    args: argparse.Namespace,
    loops: tuple[str, ...],
    one: Callable[[str], dict[str, Any]],
    title: str = "cProfile",
) -> None:
    """One more run of each loop (``one`` profiles it) and its profile over the timed steps."""
    for loop in loops:
        res = one(loop)
        print(f"\n--- {title} of {loop}, steps {args.warmup + 1}..{args.steps} ---")
        print(res["profile"])


def compare_train_loops(
    args: argparse.Namespace, loops: tuple[str, ...], one: Callable[[str, bool], dict[str, Any]]
) -> None:
    """The alternating rounds of the suite's training step and a reference script's loop
    (``loops`` = (suite, reference)), their table, per-round figures, profiles when asked, and the
    ratios: images/s, median step time and CPU time per step."""
    suite, ref = loops
    results = alternating_rounds(loops, args.rounds, lambda loop: one(loop, False))
    cpu_col = ("CPU ms/step", 13, "cpu_ms_per_step", ".1f")
    faults_col = ("faults/step", 13, "faults_per_step", ".0f")
    columns = [*rate_columns(10, 15), cpu_col, faults_col, PEAK_RSS, THREADS]
    med = print_table(results, 11, columns)
    for loop in loops:
        steps = " ".join(f"{res['median_step_ms']:.1f}" for res in results[loop])
        cpu = " ".join(f"{res['cpu_ms_per_step']:.1f}" for res in results[loop])
        print(f"per round, {loop}: median step ms {steps}; CPU ms/step {cpu}")
    paired = paired_ratios(results, suite, ref)
    print(f"per-round ratios {suite}/{ref} images/s: " + " ".join(f"{p:.2f}" for p in paired))
    print(f"load average at end: {load()}")
    ratio = med(suite, "images_per_s") / med(ref, "images_per_s")
    if wants_profile(args, ratio):
        print_profiles(args, loops, lambda loop: one(loop, True))
    step = med(ref, "median_step_ms") / med(suite, "median_step_ms")
    cpu = med(ref, "cpu_ms_per_step") / med(suite, "cpu_ms_per_step")
    print(f"median-step time {ref}/{suite}: {step:.2f}x")
    print(f"CPU time per step {ref}/{suite}: {cpu:.2f}x (less moved by other load than wall-clock)")
    print(f"ratio {suite}/{ref} images/s: {ratio:.2f}x (goal >= 1.0x)")


def sampling_rounds(
    root: Path,
    rounds: int,
    bare: Callable[[Path], float],
    ray: Callable[[Path], dict[str, Any]],
    tolerance: int = 0,
) -> tuple[list[float], list[float], list[float]]:
    """The bare loop's and ``synmed sample``'s images/s (and Ray's start-up seconds), the order
    alternating; round 1's images checked the same to ``tolerance`` grey levels."""
    bare_rates, ray_rates, startup = [], [], []
    for r in range(rounds):
        for kind in ("bare", "ray") if r % 2 == 0 else ("ray", "bare"):
            out = root / f"sample-{kind}-{r}"
            shutil.rmtree(out, ignore_errors=True)  # a failed run's, with --keep
            if kind == "bare":
                bare_rates.append(bare(out))
            else:
                summary = ray(out)
                ray_rates.append(summary["steady_images_per_s"])
                startup.append(summary["wall_seconds"] - summary["sampling_seconds"])
        if r == 0:
            check_same_images(root / "sample-bare-0", root / "sample-ray-0", tolerance=tolerance)
        for kind in ("bare", "ray"):
            shutil.rmtree(root / f"sample-{kind}-{r}")
    return bare_rates, ray_rates, startup


def print_sampling(
    rates: tuple[list[float], list[float], list[float]],
    labels: tuple[str, str],
    spec: str,
    round_spec: str,
    startup: str,
) -> None:
    """The medians of :func:`sampling_rounds`' ``rates`` (``labels`` the loops', padded), each
    round's, and the ratio ray/bare; ``startup`` names what Ray's start-up seconds hold."""
    bare, ray, ray_start = rates
    print(f"  {labels[0]}{statistics.median(bare):8{spec}} images/s "
          f"(rounds {' '.join(f'{x:{round_spec}}' for x in bare)})")  # fmt: skip
    print(f"  {labels[1]}{statistics.median(ray):8{spec}} images/s steady "
          f"(rounds {' '.join(f'{x:{round_spec}}' for x in ray)}; {startup} "
          f"{statistics.median(ray_start):.1f} s apart)")  # fmt: skip
    paired = [r / b for r, b in zip(ray, bare, strict=True)]
    print("  per-round ratios ray/bare: " + " ".join(f"{p:.2f}" for p in paired))
    print(f"  load average at end: {load()}")
    ratio = statistics.median(ray) / statistics.median(bare)
    print(f"ratio ray/bare images/s: {ratio:.2f}x (goal >= 0.95x)")
