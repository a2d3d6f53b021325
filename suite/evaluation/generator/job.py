"""`synmed evaluate generator`: FID, Fréchet distances on other encoders, KID, PRDC, per-class FID.

One pass per encoder over each shard set on Ray (:mod:`suite.evaluation.generator.stats`) yields
exact mergeable statistics for the Fréchet distance (Heusel et al. 2017; FID when the encoder is
the standard Inception-v3, ``FD_<name>`` otherwise, as Stein et al. 2023 report it for other
encoders) and a seeded feature subsample for KID (Bińkowski et al. 2018), precision/recall
(Kynkäänniemi et al. 2019) and density/coverage (Naeem et al. 2020), computed on the first
encoder given. The real set's statistics are cached by digest, so evaluating many generators
against one reference encodes it once.

Output, written all-or-nothing through a staging folder: ``result.json`` (the result schema of
:mod:`suite.artifacts.results`, evaluator ``generator``: the real and fake sets and each encoder's
weights as inputs with their digests, the options as settings, plain-number metrics of one run)
and ``metrics.csv``.
"""

from __future__ import annotations

import csv
import math
import re
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import h5py

from suite.artifacts.digests import sha256_file
from suite.artifacts.results import RESULT_FILE, InputRef, Result, write_result
from suite.config import require_at_least
from suite.data.dataset import verify_digests
from suite.data.shards import MANIFEST, SPLITS, Manifest, read_manifest
from suite.data.writer import staged_output
from suite.errors import ConfigError, DataError, ShardError
from suite.evaluation.frechet import frechet_distance
from suite.evaluation.generator.metrics import (
    DC_K,
    KID_SUBSET_SIZE,
    KID_SUBSETS,
    PR_K,
    kid,
    prdc,
)
from suite.evaluation.generator.stats import (
    DEFAULT_MAX_SAMPLES,
    SetStats,
    StatsCache,
    StatsRequest,
    cache_key,
    compute_stats,
    default_cache_dir,
)
from suite.features.encoders import EncoderSpec, resolve_encoder

RESULT_JSON = RESULT_FILE
METRICS_CSV = "metrics.csv"
SCRATCH = ".scratch"
MIN_IMAGES = max(PR_K, DC_K) + 1  # the k-NN manifolds need k + 1 samples per set


@dataclass(frozen=True, slots=True)
class GeneratorEvalOptions:
    """Everything besides the two sets and the output folder (the CLI's options)."""

    encoders: tuple[str, ...] = ("inception",)
    real_split: str | None = None
    workers: int = 1
    batch_size: int = 64
    ray_address: str | None = None
    cache_dir: Path | None = None  # None: $SYNMED_CACHE/stats or ~/.cache/synmed/stats
    use_cache: bool = True
    max_samples: int = DEFAULT_MAX_SAMPLES
    kid_subsets: int = KID_SUBSETS
    kid_subset_size: int = KID_SUBSET_SIZE
    seed: int = 0
    overwrite: bool = False


@dataclass(frozen=True, slots=True)
class EvalSet:
    """A shard set opened for evaluation: its manifest, digest and the rows that count."""

    role: str  # "real" | "fake"
    path: Path
    manifest: Manifest
    manifest_sha256: str
    split: str | None
    n: int
    shape: tuple[int, ...]  # (C, H, W) of its images

    @property
    def labelled(self) -> bool:
        return self.manifest.attrs.get("label_kind", "none") != "none" and bool(
            self.manifest.class_names
        )


def metric_name(encoder: EncoderSpec) -> str:
    """``fid`` for the standard Inception-v3 (``fid_768`` on its 768-d Mixed_6e features);
    ``fd_<encoder>`` otherwise (e.g. ``fd_random_32``, ``fd_ssl_<folder name>``), lower case with
    ``_`` for anything not a letter or digit."""
    if encoder.kind == "inception":
        return "fid" if encoder.dim == 2048 else f"fid_{encoder.dim}"
    name = (
        f"ssl_{Path(encoder.spec.removeprefix('ssl:')).name}"
        if encoder.kind == "ssl"
        else encoder.spec
    )
    return "fd_" + re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def open_set(path: Path, role: str, split: str | None) -> EvalSet:
    """Read and check a set: its manifest, every shard's sha256 (the scores, and the reference
    cache keyed by the manifest, rely on them), the rows the evaluation uses, the image shape."""
    flag = f"--{role}"
    try:
        manifest = read_manifest(path)
        verify_digests(Path(path), manifest, "sha256")
    except ShardError as err:
        raise DataError(f"{flag}: {err.what}", err.fix) from None
    if split is not None and split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}", f"use one of {', '.join(SPLITS)}")
    if manifest.count == 0:
        raise DataError(f"{flag} {path} holds no images", f"pass a non-empty shard set as {flag}")
    n = manifest.count
    if split is not None:
        counts = manifest.split_counts()
        if not counts:
            raise DataError(
                f"{flag} {path} has no splits, so --real-split {split} selects nothing",
                "drop --real-split, or ingest the set with synmed data ingest (it assigns splits)",
            )
        n = counts.get(split, 0)
        if n == 0:
            raise DataError(
                f"{flag} {path} holds no {split} images (splits: {counts})",
                "choose another --real-split",
            )
    if n < MIN_IMAGES:
        raise DataError(
            f"{flag} {path} holds {n} image(s){f' in split {split}' if split else ''}; the metrics "
            f"need at least {MIN_IMAGES} (k-NN manifolds with k = {DC_K})",
            "evaluate more images (thousands for a meaningful FID)",
        )
    first = next(rec.file for rec in manifest.shards if rec.count)
    with h5py.File(Path(path) / first, "r") as h5:
        shape = tuple(int(d) for d in h5["images"].shape[1:])
    return EvalSet(
        role, Path(path).resolve(), manifest, sha256_file(path / MANIFEST), split, n, shape
    )


def match_shapes(real: EvalSet, fake: EvalSet) -> None:
    """Refuse sets of different image shapes: each encoder resizes its input, so a Fréchet distance
    between them would score the resizing as much as the generator."""
    if real.shape == fake.shape:
        return
    (rc, rh, rw), (fc, fh, fw) = real.shape, fake.shape
    raise DataError(
        f"--real {real.path} holds {rh}x{rw} images with {rc} channel(s), --fake {fake.path} "
        f"{fh}x{fw} with {fc}: FID and the other metrics compare images of one shape",
        f"re-ingest the real source at the generator's size (synmed data ingest SRC --out NEW "
        f"--image-size {fw} --channels {fc}) and pass --real NEW, or score a generator trained "
        f"at {rw} px with {rc} channel(s)",
    )


def match_classes(real: EvalSet, fake: EvalSet) -> tuple[list[tuple[str, int, int]], str | None]:
    """Classes compared one by one: ``(name, real id, fake id)``, matched by name.

    Both sets labelled: the class names must be the same set (the order may differ), and the label
    kinds equal. One side unlabelled (an unconditional generator): no per-class scores, and the
    returned note says why.
    """
    if not (real.labelled and fake.labelled):
        side = "real" if not real.labelled else "fake"
        return [], f"no per-class scores: the {side} set is unlabelled"
    rk, fk = real.manifest.attrs.get("label_kind"), fake.manifest.attrs.get("label_kind")
    if rk != fk:
        raise DataError(
            f"--real {real.path} is {rk} but --fake {fake.path} is {fk}",
            "compare sets with the same kind of labels",
        )
    rn, fn = real.manifest.class_names, fake.manifest.class_names
    if set(rn) != set(fn) or len(rn) != len(fn):
        missing = [c for c in rn if c not in fn]
        extra = [c for c in fn if c not in rn]
        raise DataError(
            f"class names differ: --fake {fake.path} lacks {missing} and has {extra} that "
            f"--real {real.path} does not",
            "sample the generator with the real set's class names (or merge/rename classes)",
        )
    return [(name, i, fn.index(name)) for i, name in enumerate(rn)], None


def fid_768_note(encoders: list[EncoderSpec]) -> str | None:
    """Why the result holds no FID on the 768-d Inception features (seed 001's), or None."""
    dims = {e.dim for e in encoders if e.kind == "inception"}
    if 768 in dims:
        return None
    if dims:
        return "no 768-d FID (seed 001's): it was not asked for; add --encoder inception:768"
    return (
        "no FID: the Inception-v3 was not among the encoders, and only it offers the 768-d layer "
        "seed 001 reported on; add --encoder inception --encoder inception:768"
    )


def resolve_encoders(specs: tuple[str, ...]) -> list[EncoderSpec]:
    if not specs:
        raise ConfigError("no --encoder given", "pass --encoder inception (the default)")
    encoders = [resolve_encoder(s) for s in specs]
    names = [metric_name(e) for e in encoders]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(
            f"--encoder values {list(specs)} give the same metric name {dup[0]!r} twice",
            "pass each encoder once (ssl:PATH folders need distinct names)",
        )
    return encoders


def _check_options(o: GeneratorEvalOptions) -> None:
    require_at_least(
        {"--workers": o.workers, "--batch-size": o.batch_size, "--kid-subsets": o.kid_subsets}
    )
    require_at_least({"--max-samples": o.max_samples}, MIN_IMAGES)
    require_at_least({"--kid-subset-size": o.kid_subset_size}, 2)


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _fd(a: SetStats, b: SetStats) -> float | None:
    return _finite(frechet_distance(a.stats, b.stats))


def evaluate_generator(
    real: str | Path, fake: str | Path, out: str | Path, options: GeneratorEvalOptions
) -> dict[str, Any]:
    """Score the shard set ``fake`` against ``real``; write ``out``; return the result dict.

    Every input is checked before any work (missing or empty sets, every shard's sha256, image
    shapes, split, class lists, encoders, options, cache folder), so a bad input is one :class:`~suite.errors.SynmedError` and leaves
    ``out`` as it was; so does an error during the run.
    """
    started = time.perf_counter()
    _check_options(options)
    real_set = open_set(Path(real), "real", options.real_split)
    fake_set = open_set(Path(fake), "fake", None)
    match_shapes(real_set, fake_set)
    classes, class_note = match_classes(real_set, fake_set)
    encoders = resolve_encoders(tuple(options.encoders))
    cache = StatsCache(Path(options.cache_dir or default_cache_dir()).expanduser())
    if options.use_cache:
        cache.prepare()

    from suite.launch.ray_runtime import ray_session

    real_stats: list[SetStats] = []
    fake_stats: list[SetStats] = []
    cache_log: list[dict[str, Any]] = []
    inputs = [real_set.path, fake_set.path, *(e.path for e in encoders)]
    inputs += [cache.directory] if options.use_cache else []
    with staged_output(Path(out), overwrite=options.overwrite, inputs=inputs) as staging:
        scratch = staging / SCRATCH
        with ray_session(options.ray_address):
            for number, encoder in enumerate(encoders):
                digest, key = cache_key(
                    real_set.path, encoder, options.real_split, options.max_samples, options.seed
                )
                cached = cache.load(digest, key, encoder.dim) if options.use_cache else None
                subsample = {"max_samples": options.max_samples, "seed": options.seed}
                requests = [StatsRequest(fake_set.path, scratch / f"fake-{number}", **subsample)]
                if cached is None:
                    real_scratch = scratch / f"real-{number}"
                    requests.insert(
                        0,
                        StatsRequest(real_set.path, real_scratch, options.real_split, **subsample),
                    )
                # one actor pool for both sets: its encoders load once, not once per set
                computed = compute_stats(
                    requests,
                    encoder,
                    workers=options.workers,
                    batch_size=options.batch_size,
                    ray_address=options.ray_address,
                )
                if cached is None:
                    cached = computed[0]
                    file = cache.save(digest, key, cached) if options.use_cache else None
                    hit = False
                else:
                    file, hit = cache.paths(digest)[0], True
                cache_log.append(
                    {
                        "encoder": encoder.spec,
                        "digest": digest,
                        "hit": hit,
                        "file": str(file) if file else None,
                    }
                )
                real_stats.append(cached)
                fake_stats.append(computed[-1])
        result = _result(
            real_set, fake_set, encoders, classes, class_note, real_stats, fake_stats, options
        )
        result.context["cache"] = {
            "dir": str(cache.directory) if options.use_cache else None,
            "entries": cache_log,
        }
        result.context["seconds"] = round(time.perf_counter() - started, 3)
        shutil.rmtree(scratch, ignore_errors=True)
        written = write_result(staging, result)  # what callers get is exactly what the file holds
        _write_csv(staging / METRICS_CSV, written)
    return written


def _result(
    real: EvalSet,
    fake: EvalSet,
    encoders: list[EncoderSpec],
    classes: list[tuple[str, int, int]],
    class_note: str | None,
    real_stats: list[SetStats],
    fake_stats: list[SetStats],
    o: GeneratorEvalOptions,
) -> Result:
    metrics: dict[str, float | None] = {}
    for encoder, r, f in zip(encoders, real_stats, fake_stats):
        metrics[metric_name(encoder)] = _fd(r, f)
    # the sample-based metrics on the first encoder: its features are what the user asked to trust
    r0, f0 = real_stats[0], fake_stats[0]
    assert r0.sample is not None and f0.sample is not None
    k = kid(r0.sample, f0.sample, subsets=o.kid_subsets, subset_size=o.kid_subset_size, seed=o.seed)
    p = prdc(r0.sample, f0.sample, pr_k=PR_K, dc_k=DC_K)
    metrics.update(
        kid_mean=_finite(k.mean),
        kid_std=_finite(k.std),
        precision=p.precision,
        recall=p.recall,
        density=p.density,
        coverage=p.coverage,
    )
    per_class: dict[str, dict[str, Any]] = {}
    for name, ri, fi in classes:
        entry: dict[str, Any] = {}
        for encoder, r, f in zip(encoders, real_stats, fake_stats):
            a, b = r.class_stats[ri], f.class_stats[fi]
            # a covariance needs two samples; a class the generator never drew has no distance
            entry[metric_name(encoder)] = (
                _finite(frechet_distance(a, b)) if a.n >= 2 and b.n >= 2 else None
            )
        entry["n_real"] = real_stats[0].class_stats[ri].n
        entry["n_fake"] = fake_stats[0].class_stats[fi].n
        per_class[name] = entry
    context: dict[str, Any] = {
        "real": str(real.path),
        "real_manifest_sha256": real.manifest_sha256,
        "fake": str(fake.path),
        "fake_manifest_sha256": fake.manifest_sha256,
        "encoders": [e.describe() for e in encoders],
        "n_real": real_stats[0].n,
        "n_fake": fake_stats[0].n,
        "split": o.real_split,
        "sample_metrics_encoder": encoders[0].spec,
        "kid": {"subsets": k.subsets, "subset_size": k.size, "degree": 3, "seed": o.seed},
        "prdc": {
            "pr_k": p.pr_k,
            "dc_k": p.dc_k,
            "n_real": len(r0.sample),
            "n_fake": len(f0.sample),
            "max_samples": o.max_samples,
            "seed": o.seed,
        },
        "per_class_note": class_note,
        "fid_768_note": fid_768_note(encoders),
    }
    inputs = {
        "real": InputRef(str(real.path), real.manifest_sha256),
        "fake": InputRef(str(fake.path), fake.manifest_sha256),
    }
    for e in encoders:
        if e.path is not None:  # a random encoder has no weights: its spec and seed define it
            inputs[f"encoder:{e.spec}"] = InputRef(e.path, e.sha256)
    return Result(
        task="generator",
        metrics=metrics,
        per_class=per_class,
        inputs=inputs,
        settings={key: str(v) if isinstance(v, Path) else v for key, v in asdict(o).items()},
        context=context,
    )


def _write_csv(path: Path, result: dict[str, Any]) -> None:
    """``scope,metric,value``: scope ``all`` for the set, the class name for per-class rows."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["scope", "metric", "value"])
        for name, value in result["metrics"].items():
            w.writerow(["all", name, "" if value is None else repr(value)])
        for cls, entry in result["per_class"].items():
            for name, value in entry.items():
                w.writerow([cls, name, "" if value is None else repr(value)])
