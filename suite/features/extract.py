"""Feature extraction as a Ray Data job: one task per input shard, an actor pool holding the encoder.

``range(shards)`` -> ``map_batches(EncodeShards, ActorPoolStrategy(size=workers))``: each actor
builds the encoder once (on its GPU, or on its share of the CPUs), reads its shard's images with
h5py, encodes them in batches and writes the shard's features as ``features-NNNNN.npy`` into a
scratch folder (normally inside the output's staging folder, so it disappears with it). Only the
shard number, count and timing travel back through Ray's object store; the driver then assembles
the ``(N, D)`` float32 array in shard order, one shard at a time. At 120k x 2048 float32 that
array is ~1 GB, and the object store never holds more than the small per-shard records.

The scratch folder must be visible to every Ray node (as the shard set itself must be): on a
SLURM cluster, put ``--out`` on the shared file system.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from suite.data.shards import read_manifest
from suite.errors import DataError
from suite.features.encoders import EncoderSpec


@dataclass(slots=True)
class Extraction:
    """The features of a shard set, rows in manifest order (shard by shard, row by row)."""

    features: np.ndarray  # (N, D) float32
    seconds: float  # wall time of the Ray job, actor start-up and model loading included
    encode_seconds: float  # summed over shards: time actors spent reading and encoding
    workers: int
    pids: list[int]

    @property
    def images_per_s(self) -> float:
        """End-to-end throughput of the job (what a user waits for)."""
        return len(self.features) / self.seconds if self.seconds > 0 else float("nan")

    @property
    def images_per_s_per_worker(self) -> float:
        """Encoding throughput of one actor, start-up excluded."""
        return len(self.features) / self.encode_seconds if self.encode_seconds > 0 else float("nan")


def scratch_file(scratch: Path, number: int) -> Path:
    return scratch / f"features-{number:05d}.npy"


def actor_encoder(encoder: EncoderSpec, threads: int) -> tuple[str, Any]:
    """``(device, encoder)`` for an actor of an encoding pool: its GPU if it has one."""
    import torch

    from suite.features.encoders import build_encoder

    # Ray sets OMP_NUM_THREADS from the actor's CPU share (1 for a fraction); torch's own pool
    # must match it, or two actors on two cores each spawn a thread per core and thrash.
    torch.set_num_threads(threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return device, build_encoder(encoder, device)


class EncodeShards:
    """The actor-pool stage: build the encoder once, then encode whole shards, one per call."""

    def __init__(
        self,
        directory: str,
        files: list[str],
        encoder: EncoderSpec,
        batch_size: int,
        scratch: str,
        threads: int,
    ) -> None:
        self.device, self.encoder = actor_encoder(encoder, threads)
        self.directory = Path(directory)
        self.files = files
        self.batch_size = batch_size
        self.scratch = Path(scratch)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        numbers, counts, seconds = [], [], []
        for number in batch["id"].tolist():
            start = time.perf_counter()
            with h5py.File(self.directory / self.files[number], "r") as h5:
                images = h5["images"]
                n = images.shape[0]
                features = np.empty((n, self.encoder.dim), dtype=np.float32)
                for lo in range(0, n, self.batch_size):
                    chunk = torch.from_numpy(images[lo : lo + self.batch_size])
                    features[lo : lo + len(chunk)] = self.encoder(chunk).cpu().numpy()
            final = scratch_file(self.scratch, number)
            tmp = final.with_name(final.name + ".tmp.npy")  # np.save appends .npy to other names
            np.save(tmp, features)
            os.replace(tmp, final)  # a retried task overwrites; a reader never sees half a file
            numbers.append(number)
            counts.append(n)
            seconds.append(time.perf_counter() - start)
        return {
            "shard": np.asarray(numbers, dtype=np.int64),
            "count": np.asarray(counts, dtype=np.int64),
            "seconds": np.asarray(seconds, dtype=np.float64),
            "pid": np.full(len(numbers), os.getpid(), dtype=np.int64),
        }


def extract_features(
    shards: str | Path,
    encoder: EncoderSpec,
    scratch: str | Path,
    *,
    workers: int = 1,
    batch_size: int = 64,
    ray_address: str | None = None,
) -> Extraction:
    """Encode every image of the shard set ``shards`` with ``encoder`` in a Ray actor pool.

    Starts an embedded local Ray, or joins ``ray_address`` / ``RAY_ADDRESS`` (see
    :func:`suite.launch.ray_runtime.ray_session`); ``workers`` actors each hold one encoder (one
    GPU each where the cluster has GPUs). The per-shard ``.npy`` files in ``scratch`` are deleted
    once assembled.
    """
    from suite.launch.ray_runtime import (
        actor_resources,
        index_dataset,
        ray_session,
        unwrap_synmed_errors,
    )

    if workers < 1 or batch_size < 1:
        raise DataError("--workers and --batch-size must be at least 1", "pass positive values")
    directory = Path(shards).resolve()
    manifest = read_manifest(directory)
    files = [rec.file for rec in manifest.shards]
    counts = [rec.count for rec in manifest.shards]
    total = sum(counts)
    if total == 0:
        raise DataError(f"{directory} holds no images", "cluster a non-empty shard set")
    scratch = Path(scratch).resolve()
    scratch.mkdir(parents=True, exist_ok=True)

    with ray_session(ray_address) as ray:
        from ray.data import ActorPoolStrategy

        resources = actor_resources(ray, workers)
        cpus = ray.cluster_resources().get("CPU", 1)
        threads = 1 if "num_gpus" in resources else max(1, int(cpus // workers))
        start = time.perf_counter()
        ds = index_dataset(ray, len(files)).map_batches(
            EncodeShards,
            batch_size=1,  # one shard per call: a shard is the unit of work and of retry
            compute=ActorPoolStrategy(
                size=min(workers, len(files)),
                # a queued shard would wait behind a whole busy shard while another actor idles
                max_tasks_in_flight_per_actor=1,
            ),
            fn_constructor_kwargs={
                "directory": str(directory),
                "files": files,
                "encoder": encoder,
                "batch_size": batch_size,
                "scratch": str(scratch),
                "threads": threads,
            },
            **resources,
        )
        with unwrap_synmed_errors():
            rows: list[dict[str, Any]] = ds.take_all()
        seconds = time.perf_counter() - start

    done = {int(r["shard"]): r for r in rows}
    missing = sorted(set(range(len(files))) - set(done))
    if missing or len(rows) != len(files):
        raise DataError(
            f"feature extraction returned {len(rows)} results for {len(files)} shards "
            f"(missing {missing[:5]})",
            "rerun; if it repeats, check the Ray worker logs",
        )
    features = np.empty((total, encoder.dim), dtype=np.float32)
    offset = 0
    for number, count in enumerate(counts):
        path = scratch_file(scratch, number)
        part = np.load(path, mmap_mode="r")
        if part.shape != (count, encoder.dim):
            raise DataError(
                f"{path} holds features {part.shape}, expected ({count}, {encoder.dim})",
                "the shard changed during extraction; rerun",
            )
        features[offset : offset + count] = part
        offset += count
        del part
        path.unlink()
    if not np.isfinite(features).all():
        bad = int((~np.isfinite(features)).any(axis=1).sum())
        raise DataError(
            f"the {encoder.spec} encoder produced NaN/inf features for {bad} image(s)",
            "check the encoder weights (an SSL export that diverged?)",
        )
    return Extraction(
        features=features,
        seconds=seconds,
        encode_seconds=float(sum(float(r["seconds"]) for r in rows)),
        workers=min(workers, len(files)),
        pids=sorted({int(r["pid"]) for r in rows}),
    )
