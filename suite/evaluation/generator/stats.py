"""Feature statistics of a shard set, per shard on Ray and merged exactly; the reference-stats cache.

The job runs an actor pool as feature extraction does (:mod:`suite.features.extract`: one encoder
per actor, one whole shard per task), one pool for all the sets of a job (the real set and the
fake one, so the encoders load once): :class:`ShardStats` encodes the selected rows of its shard
and writes, into the set's scratch folder, the shard's sufficient statistics (count, sum, sum of
outer products in float64, overall and per class: :class:`suite.evaluation.frechet.FeatureStats`)
and, when asked, its features. The driver streams the results, merges the statistics in shard
order (so a run is bit-for-bit reproducible whatever the completion order) and deletes each file
once merged. The Fréchet distance (Heusel et al. 2017) needs nothing else; KID and PRDC need
features, of which the driver keeps a seeded subsample.

Reference (real) statistics are cached in ``<cache>/<digest>.npz`` (numpy arrays, loaded with
``allow_pickle=False``: nothing in the cache runs as code) with a ``<digest>.json`` sidecar holding
the key and the npz's sha256, written last. The digest covers what decides the numbers: the real
manifest's sha256 (itself holding every shard's sha256), the encoder's weights sha256 (or, for the
seeded random encoder, its recipe and torch version), the split and the subsample size and seed.
A sidecar whose key differs, or an npz whose sha256 differs from its sidecar, is refused.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from suite.artifacts.digests import sha256_file, sha256_text
from suite.artifacts.files import atomic_write_text
from suite.data.shards import MANIFEST, SPLITS, read_manifest
from suite.errors import ConfigError, DataError
from suite.evaluation.frechet import FeatureStats
from suite.features.encoders import RANDOM_SEED, EncoderSpec
from suite.features.extract import actor_encoder, scratch_file

CACHE_FORMAT = 1  # bump when the stored arrays or the key change meaning
DEFAULT_MAX_SAMPLES = 10_000  # rows kept for KID/PRDC (Naeem et al. 2020 use 10k per set)


@dataclass(slots=True)
class SetStats:
    """A shard set's features summarised for one encoder.

    ``stats`` and ``class_stats`` are exact over every selected row; ``sample`` holds the features
    of ``sample_rows`` (positions among the selected rows, ascending) for the sample-based metrics,
    or is None when the job was not asked for features.
    """

    encoder: str
    stats: FeatureStats
    class_stats: list[FeatureStats]  # one per class of the set (empty for an unlabelled set)
    sample: np.ndarray | None
    sample_rows: np.ndarray | None
    seconds: float = 0.0
    workers: int = 0
    pids: list[int] = field(default_factory=list)

    @property
    def n(self) -> int:
        return self.stats.n


def empty_stats(dim: int) -> FeatureStats:
    return FeatureStats(0, np.zeros(dim), np.zeros((dim, dim)))


def stats_file(scratch: Path, number: int) -> Path:
    return scratch / f"stats-{number:05d}.npz"


def select_rows(h5: h5py.File, split: str | None) -> np.ndarray:
    """Row positions of a shard that belong to ``split`` (all rows when None)."""
    n = h5["images"].shape[0]
    if split is None:
        return np.arange(n)
    return np.flatnonzero(h5["split"][:] == SPLITS.index(split))


def class_members(labels: np.ndarray, num_classes: int) -> list[np.ndarray]:
    """Boolean row masks per class: label == c (multiclass), or label c set (multilabel)."""
    if labels.ndim == 2:
        return [labels[:, c] > 0 for c in range(num_classes)]
    return [labels == c for c in range(num_classes)]


@dataclass(frozen=True, slots=True)
class StatsRequest:
    """One shard set for :func:`compute_stats`: the rows of ``split`` (all when None), a scratch
    folder of its own (per-shard files are named by shard number), and whether to keep a seeded
    subsample of ``max_samples`` rows' features."""

    shards: Path
    scratch: Path
    split: str | None = None
    keep_features: bool = True
    max_samples: int = DEFAULT_MAX_SAMPLES
    seed: int = 0


class ShardStats:
    """The actor-pool stage: encode a shard's selected rows, write its statistics (and features).

    One pool serves every set of a job (the real and the fake set): task ``i`` is shard
    ``tasks[i][1]`` of set ``tasks[i][0]``, so the encoder is built once per actor, not per set.
    """

    def __init__(
        self,
        sets: list[dict[str, Any]],
        tasks: list[tuple[int, int]],
        encoder: EncoderSpec,
        batch_size: int,
        threads: int,
    ) -> None:
        self.device, self.encoder = actor_encoder(encoder, threads)
        self.sets = sets
        self.tasks = tasks
        self.batch_size = batch_size

    def encode_rows(self, images: h5py.Dataset, rows: np.ndarray) -> np.ndarray:
        import torch

        features = np.empty((len(rows), self.encoder.dim), dtype=np.float32)
        for lo in range(0, len(rows), self.batch_size):
            pick = rows[lo : lo + self.batch_size]
            # one contiguous read covering the batch: a split is stored contiguously, and h5py's
            # point selection is slower than reading the few rows in between
            block = images[int(pick[0]) : int(pick[-1]) + 1]
            chunk = torch.from_numpy(np.ascontiguousarray(block[pick - pick[0]]))
            features[lo : lo + len(pick)] = self.encoder(chunk).cpu().numpy()
        return features

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        sets, numbers, counts, seconds = [], [], [], []
        dim = self.encoder.dim
        for task in batch["id"].tolist():
            start = time.perf_counter()
            which, number = self.tasks[task]
            job = self.sets[which]
            num_classes, scratch = job["num_classes"], Path(job["scratch"])
            with h5py.File(Path(job["directory"]) / job["files"][number], "r") as h5:
                rows = select_rows(h5, job["split"])
                features = self.encode_rows(h5["images"], rows)
                labels = h5["labels"][:][rows] if num_classes else None
            total = FeatureStats.of(features)
            per_class = (
                [FeatureStats.of(features[m]) for m in class_members(labels, num_classes)]
                if labels is not None
                else []
            )
            final = stats_file(scratch, number)
            tmp = final.with_name(final.name + ".tmp.npz")  # np.savez appends .npz to other names
            np.savez(
                tmp,
                n=np.int64(total.n),
                total=total.total,
                outer=total.outer,
                class_n=np.asarray([s.n for s in per_class], dtype=np.int64),
                class_total=np.asarray([s.total for s in per_class]).reshape(-1, dim),
                class_outer=np.asarray([s.outer for s in per_class]).reshape(-1, dim, dim),
            )
            if job["keep_features"]:
                feat = scratch_file(scratch, number)
                feat_tmp = feat.with_name(feat.name + ".tmp.npy")
                np.save(feat_tmp, features)
                os.replace(feat_tmp, feat)
            os.replace(tmp, final)  # last: the stats file marks the shard as done
            sets.append(which)
            numbers.append(number)
            counts.append(len(rows))
            seconds.append(time.perf_counter() - start)
        return {
            "set": np.asarray(sets, dtype=np.int64),
            "shard": np.asarray(numbers, dtype=np.int64),
            "count": np.asarray(counts, dtype=np.int64),
            "seconds": np.asarray(seconds, dtype=np.float64),
            "pid": np.full(len(numbers), os.getpid(), dtype=np.int64),
        }


def _load_shard_stats(path: Path, dim: int, num_classes: int) -> tuple[FeatureStats, list]:
    with np.load(path, allow_pickle=False) as z:
        total = FeatureStats(int(z["n"]), z["total"], z["outer"])
        per_class = [
            FeatureStats(int(n), t, o)
            for n, t, o in zip(z["class_n"], z["class_total"], z["class_outer"])
        ]
    if total.total.shape != (dim,) or len(per_class) != num_classes:
        raise DataError(f"{path} holds statistics of the wrong shape", "rerun the evaluation")
    return total, per_class


def sample_positions(n: int, max_samples: int, seed: int) -> np.ndarray:
    """Which of ``n`` selected rows the sample-based metrics use: all, or a seeded subsample."""
    if n <= max_samples:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, max_samples, replace=False))


def compute_set_stats(
    shards: str | Path,
    encoder: EncoderSpec,
    scratch: str | Path,
    *,
    split: str | None = None,
    keep_features: bool = True,
    max_samples: int = DEFAULT_MAX_SAMPLES,
    seed: int = 0,
    workers: int = 1,
    batch_size: int = 64,
    ray_address: str | None = None,
) -> SetStats:
    """Statistics of the shard set ``shards`` (rows of ``split``) under ``encoder``, on Ray: one
    :class:`StatsRequest` of :func:`compute_stats`."""
    request = StatsRequest(Path(shards), Path(scratch), split, keep_features, max_samples, seed)
    (stats,) = compute_stats(
        [request],
        encoder,
        workers=workers,
        batch_size=batch_size,
        ray_address=ray_address,
    )
    return stats


@dataclass(slots=True)
class _Merge:
    """The driver's running merge of one set: shard results merged in shard order."""

    directory: Path
    scratch: Path
    files: list[str]
    num_classes: int
    keep_features: bool
    merged: FeatureStats
    merged_class: list[FeatureStats]
    counts: dict[int, int] = field(default_factory=dict)
    pids: set[int] = field(default_factory=set)
    following: int = 0

    def add(self, number: int, count: int, pid: int, dim: int) -> None:
        self.counts.setdefault(number, count)
        self.pids.add(pid)
        while self.following in self.counts:
            path = stats_file(self.scratch, self.following)
            total, per_class = _load_shard_stats(path, dim, self.num_classes)
            if total.n != self.counts[self.following]:
                raise DataError(
                    f"{path} counts {total.n} rows, its task {self.counts[self.following]}"
                )
            self.merged = self.merged.merge(total)
            self.merged_class = [a.merge(b) for a, b in zip(self.merged_class, per_class)]
            path.unlink()
            self.following += 1


def compute_stats(
    requests: list[StatsRequest],
    encoder: EncoderSpec,
    *,
    workers: int = 1,
    batch_size: int = 64,
    ray_address: str | None = None,
) -> list[SetStats]:
    """Statistics of each requested shard set under ``encoder``, on Ray, in one actor pool.

    One Ray task per shard in a pool of ``workers`` encoders (one GPU each where the cluster has
    GPUs, a CPU share otherwise), shared by all the sets: a pool and its encoders start once per
    job, not once per set. Joins ``ray_address`` / ``RAY_ADDRESS`` or an already initialised Ray,
    else starts a local one (:func:`suite.launch.ray_runtime.ray_session`). Per-class statistics
    are computed for labelled sets. The shards' sha256 digests are not checked here: the caller
    does that once per set.
    """
    from suite.launch.ray_runtime import (
        actor_resources,
        index_dataset,
        ray_session,
        unwrap_synmed_errors,
    )

    dim = encoder.dim
    jobs: list[_Merge] = []
    for request in requests:
        directory = request.shards.resolve()
        manifest = read_manifest(directory)
        labelled = manifest.attrs.get("label_kind") != "none"
        num_classes = len(manifest.class_names) if labelled else 0
        scratch = request.scratch.resolve()
        scratch.mkdir(parents=True, exist_ok=True)
        jobs.append(
            _Merge(
                directory=directory,
                scratch=scratch,
                files=[rec.file for rec in manifest.shards],
                num_classes=num_classes,
                keep_features=request.keep_features,
                merged=empty_stats(dim),
                merged_class=[empty_stats(dim) for _ in range(num_classes)],
            )
        )
    tasks = [(which, number) for which, job in enumerate(jobs) for number in range(len(job.files))]
    pool = min(workers, len(tasks))
    with ray_session(ray_address) as ray:
        from ray.data import ActorPoolStrategy

        resources = actor_resources(ray, workers)
        cpus = ray.cluster_resources().get("CPU", 1)
        threads = 1 if "num_gpus" in resources else max(1, int(cpus // workers))
        start = time.perf_counter()
        sets = [
            {
                "directory": str(job.directory),
                "files": job.files,
                "scratch": str(job.scratch),
                "split": request.split,
                "num_classes": job.num_classes,
                "keep_features": job.keep_features,
            }
            for job, request in zip(jobs, requests)
        ]
        ds = index_dataset(ray, len(tasks)).map_batches(
            ShardStats,
            batch_size=1,  # one shard per call: a shard is the unit of work and of retry
            compute=ActorPoolStrategy(size=pool, max_tasks_in_flight_per_actor=1),
            fn_constructor_kwargs={
                "sets": sets,
                "tasks": tasks,
                "encoder": encoder,
                "batch_size": batch_size,
                "threads": threads,
            },
            **resources,
        )
        # Merge as results stream in, in shard order: the scratch folder holds only the shards
        # finished ahead of the next one to merge, and float64 sums always add in the same order.
        with unwrap_synmed_errors():
            for row in ds.iter_rows():
                jobs[int(row["set"])].add(
                    int(row["shard"]), int(row["count"]), int(row["pid"]), dim
                )
        seconds = time.perf_counter() - start

    return [_finish(job, r, encoder, seconds, pool) for job, r in zip(jobs, requests)]


def _finish(
    job: _Merge, request: StatsRequest, encoder: EncoderSpec, seconds: float, pool: int
) -> SetStats:
    """The merged statistics of one set, checked whole and finite, with its features sample."""
    files = job.files
    if job.following != len(files):
        missing = sorted(set(range(len(files))) - set(job.counts))
        raise DataError(
            f"the statistics job returned {len(job.counts)} results for {len(files)} shards "
            f"of {job.directory} (missing {missing[:5]})",
            "rerun; if it repeats, check the Ray worker logs",
        )
    merged = job.merged
    sample = rows = None
    if job.keep_features:
        rows = sample_positions(merged.n, request.max_samples, request.seed)
        counts = [job.counts[i] for i in range(len(files))]
        sample = _gather(job.scratch, counts, rows, encoder.dim)
        if not np.isfinite(sample).all():
            raise DataError(
                f"the {encoder.spec} encoder produced NaN/inf features on {job.directory}",
                "check the encoder weights (an SSL export that diverged?)",
            )
    if not (np.isfinite(merged.total).all() and np.isfinite(merged.outer).all()):
        raise DataError(
            f"the {encoder.spec} encoder produced NaN/inf features on {job.directory}",
            "check the encoder weights (an SSL export that diverged?)",
        )
    return SetStats(
        encoder=encoder.spec,
        stats=merged,
        class_stats=job.merged_class,
        sample=sample,
        sample_rows=rows,
        seconds=seconds,
        workers=pool,
        pids=sorted(job.pids),
    )


def _gather(scratch: Path, counts: list[int], rows: np.ndarray, dim: int) -> np.ndarray:
    """The features at ``rows`` (positions among all selected rows), read shard by shard."""
    out = np.empty((len(rows), dim), dtype=np.float32)
    offset = filled = 0
    for number, count in enumerate(counts):
        path = scratch_file(scratch, number)
        lo, hi = np.searchsorted(rows, [offset, offset + count])
        if hi > lo:
            part = np.load(path, mmap_mode="r", allow_pickle=False)
            if part.shape != (count, dim):
                raise DataError(f"{path} holds {part.shape}, expected ({count}, {dim})", "rerun")
            out[filled : filled + hi - lo] = part[rows[lo:hi] - offset]
            filled += hi - lo
            del part
        path.unlink(missing_ok=True)
        offset += count
    return out


# -- the reference-statistics cache ----------------------------------------------------------------


def default_cache_dir() -> Path:
    """``$SYNMED_CACHE/stats``, else ``~/.cache/synmed/stats``."""
    root = os.environ.get("SYNMED_CACHE")
    return Path(root) / "stats" if root else Path.home() / ".cache" / "synmed" / "stats"


def encoder_identity(encoder: EncoderSpec) -> dict[str, Any]:
    """What decides an encoder's features, independent of where its files live."""
    ident: dict[str, Any] = {
        "kind": encoder.kind,
        "arch": encoder.arch,
        "dim": encoder.dim,
        "image_size": encoder.image_size,
        "in_channels": encoder.in_channels,
        "mean": list(encoder.mean),
        "std": list(encoder.std),
    }
    if encoder.sha256:
        ident["weights_sha256"] = encoder.sha256
    if encoder.kind == "random":
        import torch

        # no weights file: the seeded initialisation is the weights, and torch's init code decides it
        ident["seed"] = RANDOM_SEED
        ident["torch"] = torch.__version__.split("+")[0]
    return ident


def cache_key(
    real: Path, encoder: EncoderSpec, split: str | None, max_samples: int, seed: int
) -> tuple[str, dict[str, Any]]:
    """The cache digest (sha256 of the canonical JSON key) and the key itself."""
    key = {
        "format": CACHE_FORMAT,
        "manifest_sha256": sha256_file(Path(real) / MANIFEST),
        "encoder": encoder_identity(encoder),
        "split": split,
        "sample": {"max": max_samples, "seed": seed},
    }
    text = json.dumps(key, sort_keys=True, separators=(",", ":"))
    return sha256_text(text), key


@dataclass(frozen=True, slots=True)
class StatsCache:
    """A folder of reference statistics, ``<digest>.npz`` + ``<digest>.json``."""

    directory: Path

    def prepare(self) -> None:
        """Create the folder, or fail before any work if it cannot be written."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            probe = self.directory / f".probe-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as err:
            raise ConfigError(
                f"the statistics cache {self.directory} cannot be written ({err.strerror})",
                "pass --cache-dir (or set SYNMED_CACHE) to a writable folder, or --no-cache",
            ) from None

    def paths(self, digest: str) -> tuple[Path, Path]:
        return self.directory / f"{digest}.npz", self.directory / f"{digest}.json"

    def load(self, digest: str, key: dict[str, Any], dim: int) -> SetStats | None:
        """The cached statistics, None on a miss; a corrupted or foreign entry is a DataError."""
        arrays, sidecar = self.paths(digest)
        if not (arrays.is_file() and sidecar.is_file()):
            return None  # a sidecar is written last: without it the entry never completed
        fix = f"delete {arrays} and {sidecar} (they are recomputed), or pass --no-cache"
        try:
            meta = json.loads(sidecar.read_text())
        except ValueError:
            raise DataError(f"cache entry {sidecar} is not valid JSON", fix) from None
        if meta.get("key") != key:
            raise DataError(f"cache entry {sidecar} was written for another key", fix)
        if sha256_file(arrays) != meta.get("sha256"):
            raise DataError(
                f"cache entry {arrays} fails its sha256 check (changed since it was written)", fix
            )
        try:
            with np.load(arrays, allow_pickle=False) as z:
                stats = FeatureStats(int(z["n"]), z["total"], z["outer"])
                class_stats = [
                    FeatureStats(int(n), t, o)
                    for n, t, o in zip(z["class_n"], z["class_total"], z["class_outer"])
                ]
                sample, rows = z["sample"], z["sample_rows"]
        except (ValueError, KeyError, OSError) as err:
            raise DataError(f"cache entry {arrays} cannot be read ({err})", fix) from None
        if stats.total.shape != (dim,) or sample.ndim != 2 or sample.shape[1] != dim:
            raise DataError(f"cache entry {arrays} holds arrays of the wrong shape", fix)
        return SetStats(meta["key"]["encoder"]["kind"], stats, class_stats, sample, rows)

    def save(self, digest: str, key: dict[str, Any], stats: SetStats) -> Path:
        """Store an entry: arrays first, then the sidecar with their sha256 (the commit mark)."""
        assert stats.sample is not None and stats.sample_rows is not None
        arrays, sidecar = self.paths(digest)
        dim = stats.stats.total.shape[0]
        tmp = self.directory / f".{digest}.{os.getpid()}.tmp.npz"
        np.savez(
            tmp,
            n=np.int64(stats.n),
            total=stats.stats.total,
            outer=stats.stats.outer,
            class_n=np.asarray([s.n for s in stats.class_stats], dtype=np.int64),
            class_total=np.asarray([s.total for s in stats.class_stats]).reshape(-1, dim),
            class_outer=np.asarray([s.outer for s in stats.class_stats]).reshape(-1, dim, dim),
            sample=stats.sample,
            sample_rows=stats.sample_rows,
        )
        os.replace(tmp, arrays)
        meta = {
            "key": key,
            "sha256": sha256_file(arrays),
            "n": stats.n,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        atomic_write_text(sidecar, json.dumps(meta, indent=1, sort_keys=True))
        return arrays
