"""A torch Dataset over a shard set, safe with DataLoader worker processes.

The constructor reads only the manifest and the small per-row arrays (index, labels, split,
cluster) to build the selection; image data is read on demand. HDF5 handles are opened lazily in
the process that reads, and dropped when the dataset is pickled or the process forks, because an
h5py handle shared across a fork returns garbage or crashes.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from suite.artifacts.digests import sha256_file
from suite.data.shards import SPLITS, Manifest, check_shard, open_shard, read_manifest
from suite.errors import ShardError

Sample = dict[str, Any]
Verify = Literal["sha256", "size", "none"]


def verify_digests(directory: Path, manifest: Manifest, mode: Verify = "sha256") -> None:
    """Check every shard file exists and matches the manifest (size only, or full sha256)."""
    if mode == "none":
        return
    for rec in manifest.shards:
        path = directory / rec.file
        if not path.is_file():
            raise ShardError(
                f"{path} is listed in the manifest but missing",
                "re-create or re-sync the shard set",
            )
        if mode == "sha256" and sha256_file(path) != rec.sha256:
            raise ShardError(
                f"{path}: sha256 does not match the manifest (the file changed or is truncated)",
                "re-create the shard, or re-copy the shard set",
            )


class ShardDataset(Dataset[Sample]):
    """Rows of a shard set, optionally filtered, as dicts of tensors.

    Each item is ``{"image": uint8 (C, H, W), "index": int, "label": int | float (K,), "mask":
    uint8 (1, H, W)}`` (label and mask only when the set has them); ``transform`` receives and
    returns that dict, so joint image+mask transforms see both.

    Args:
        directory: The shard set folder.
        split: Keep one split ("train", "val", "test"); None keeps all rows.
        classes: Keep rows of these classes (names or ids); multilabel rows with any of them.
        index_range: Keep global indices in ``[start, stop)``.
        clusters: Keep rows whose cluster id is in this list (needs a ``cluster`` dataset).
        representatives_only: Keep only the clusters' representatives (the N rows nearest each
            centroid, ``synmed cluster``): seed 004 trained its per-cluster generators on them.
        labels_from: "class" (the row's label) or "cluster": the cluster id is the label, and
            the classes are ``cluster0..cluster{k-1}`` (a generator conditioned on the cluster).
        accepted_only: Keep rows a classifier accepted (a set sampled with ``synmed sample
            --accept``; its rows that ran out of attempts are flagged, not dropped).
        transform: Applied to each sample dict.
        verify: "sha256" (default) hashes every shard once, here, before use; "size" only checks
            they exist; "none" trusts the manifest.
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        split: str | None = None,
        classes: Sequence[str | int] | None = None,
        index_range: tuple[int, int] | None = None,
        clusters: Sequence[int] | None = None,
        representatives_only: bool = False,
        labels_from: Literal["class", "cluster"] = "class",
        accepted_only: bool = False,
        transform: Callable[[Sample], Sample] | None = None,
        verify: Verify = "sha256",
    ) -> None:
        self.directory = Path(directory)
        self.manifest = read_manifest(self.directory)
        verify_digests(self.directory, self.manifest, verify)
        self.transform = transform
        self.class_names = self.manifest.class_names
        self.label_kind: str = self.manifest.attrs.get("label_kind", "none")
        class_ids = self._class_ids(classes) if classes is not None else None
        by_cluster = labels_from == "cluster"
        if by_cluster or clusters is not None or representatives_only:
            self._check_clustered()
        if by_cluster:
            k = int(self.manifest.attrs["clustering"]["k"])
            self.class_names, self.label_kind = [f"cluster{c}" for c in range(k)], "multiclass"
        if split is not None and split not in SPLITS:
            raise ShardError(f"unknown split {split!r}", f"use one of {', '.join(SPLITS)}")

        shard_of: list[np.ndarray] = []
        row_of: list[np.ndarray] = []
        labels: list[np.ndarray] = []
        indices: list[np.ndarray] = []
        self.has_masks = False
        for number, rec in enumerate(self.manifest.shards):
            with open_shard(self.directory / rec.file) as h5:
                check_shard(self.directory / rec.file, h5, rec, self.manifest)
                self.has_masks = "masks" in h5
                keep = np.ones(rec.count, dtype=bool)
                index = h5["index"][:]
                if index_range is not None:
                    keep &= (index >= index_range[0]) & (index < index_range[1])
                if split is not None:
                    if "split" not in h5:
                        raise ShardError(
                            f"{self.directory} has no split column, cannot select split {split!r}",
                            "ingest with synmed data ingest (it assigns splits) or drop the split filter",
                        )
                    keep &= h5["split"][:] == SPLITS.index(split)
                lab = h5["labels"][:] if "labels" in h5 else None
                if class_ids is not None:
                    if lab is None:
                        raise ShardError(
                            f"{self.directory} has no labels, cannot filter by class",
                            "drop the class filter",
                        )
                    keep &= (
                        lab[:, class_ids].any(axis=1) if lab.ndim == 2 else np.isin(lab, class_ids)
                    )
                if clusters is not None:
                    keep &= np.isin(h5["cluster"][:], np.asarray(clusters))
                if representatives_only:
                    if "representative" not in h5:
                        raise ShardError(
                            f"{self.directory} was clustered before representatives were marked",
                            "cluster it again with synmed cluster --overwrite",
                        )
                    keep &= h5["representative"][:] > 0
                if by_cluster:  # rows the clustering left out (-1) have no such label
                    lab = h5["cluster"][:].astype(np.int64)
                    keep &= lab >= 0
                if accepted_only:
                    if "accepted" not in h5:
                        raise ShardError(
                            f"{self.directory} has no accepted column, cannot keep accepted rows",
                            "sample it with synmed sample --accept CLASSIFIER, or drop "
                            "accepted_only",
                        )
                    keep &= h5["accepted"][:].astype(bool)
            rows = np.flatnonzero(keep)
            shard_of.append(np.full(len(rows), number, dtype=np.int32))
            row_of.append(rows.astype(np.int64))
            indices.append(index[rows])
            if lab is not None:
                labels.append(lab[rows])
        self._shard_of = np.concatenate(shard_of) if shard_of else np.zeros(0, np.int32)
        self._row_of = np.concatenate(row_of) if row_of else np.zeros(0, np.int64)
        self.indices = np.concatenate(indices) if indices else np.zeros(0, np.int64)
        self.labels: np.ndarray | None = np.concatenate(labels) if labels else None
        self._files: dict[int, h5py.File] = {}
        self._datasets: dict[int, tuple[h5py.Dataset, h5py.Dataset | None]] = {}
        self._pid = os.getpid()

    # -- selection helpers -------------------------------------------------------------------------

    def _check_clustered(self) -> None:
        if "clustering" not in self.manifest.attrs:
            raise ShardError(
                f"{self.directory} has no cluster ids (it is not a clustered set)",
                "run `synmed cluster` on it first, or drop the cluster filter",
            )

    def _class_ids(self, classes: Sequence[str | int]) -> list[int]:
        ids = []
        for c in classes:
            if isinstance(c, str) and c in self.class_names:
                ids.append(self.class_names.index(c))
            elif isinstance(c, int) and 0 <= c < len(self.class_names):
                ids.append(c)
            else:
                raise ShardError(
                    f"class {c!r} is not in {self.directory}",
                    f"classes here: {', '.join(self.class_names) or '(unlabelled set)'}",
                )
        return ids

    # -- reading -----------------------------------------------------------------------------------

    def _file(self, number: int) -> h5py.File:
        if os.getpid() != self._pid:  # forked into a worker: inherited handles are unusable
            self._files = {}
            self._datasets = {}
            self._pid = os.getpid()
        handle = self._files.get(number)
        if handle is None:
            handle = h5py.File(self.directory / self.manifest.shards[number].file, "r")
            self._files[number] = handle
        return handle

    def _images(self, number: int) -> tuple[h5py.Dataset, h5py.Dataset | None]:
        """The shard's ``images`` and ``masks`` datasets, looked up once per shard and process.

        ``h5["images"]`` opens the HDF5 object by name and builds an h5py Dataset: ~95 us, six
        times the ~15 us it takes to read and decode the one-image chunk itself.
        """
        h5 = self._file(number)  # first: resets the caches after a fork
        found = self._datasets.get(number)
        if found is None:
            found = (h5["images"], h5["masks"] if self.has_masks else None)
            self._datasets[number] = found
        return found

    def __len__(self) -> int:
        return len(self._row_of)

    def _sample(self, number: int, row: int, position: int) -> Sample:
        images, masks = self._images(number)
        sample: Sample = {
            "image": torch.from_numpy(images[row]),
            "index": int(self.indices[position]),
        }
        if self.labels is not None:
            label = self.labels[position]
            sample["label"] = (
                torch.from_numpy(label.astype(np.float32)) if label.ndim else int(label)
            )
        if masks is not None:
            sample["mask"] = torch.from_numpy(masks[row])
        return self.transform(sample) if self.transform is not None else sample

    def __getitem__(self, position: int) -> Sample:
        if position < 0:
            position += len(self)
        number = int(self._shard_of[position])
        return self._sample(number, int(self._row_of[position]), position)

    def __getitems__(self, positions: list[int]) -> list[Sample]:
        """Batched read (used by DataLoader's auto-batching): one pass per shard, in row order."""
        out: list[Sample | None] = [None] * len(positions)
        order = sorted(
            range(len(positions)),
            key=lambda i: (self._shard_of[positions[i]], self._row_of[positions[i]]),
        )
        for i in order:
            out[i] = self[positions[i]]
        return out  # type: ignore[return-value]

    def read_batch(self, positions: Sequence[int]) -> Sample:
        """The rows at ``positions`` as one collated batch, read without a per-row sample: per
        shard, each run of consecutive rows is one h5py read into a preallocated array.

        Equal to ``default_collate(self.__getitems__(positions))`` (``image``, ``index``,
        ``label``, ``mask``) for a set without a transform; a DataLoader over
        :class:`BatchReads` then moves three tensors per batch from a worker, not a list of
        per-image dicts that the main process stacks.
        """
        if self.transform is not None:
            raise ShardError(
                f"read_batch of {self.directory} with a per-sample transform",
                "read per sample (DataLoader's own batching), or apply the transform to batches",
            )
        where = np.asarray(positions, dtype=np.int64)
        if len(where) == 0:
            raise ShardError(
                f"read_batch of {self.directory} got no positions", "pass at least one"
            )
        where = np.where(where < 0, where + len(self), where)
        first_images, first_masks = self._images(int(self._shard_of[where[0]]))
        images = np.empty((len(where), *first_images.shape[1:]), dtype=first_images.dtype)
        masks = None
        if first_masks is not None:
            masks = np.empty((len(where), *first_masks.shape[1:]), dtype=first_masks.dtype)
        shards, rows = self._shard_of[where], self._row_of[where]
        order = np.lexsort((rows, shards))  # by shard, then row: runs become visible
        start = 0
        while start < len(order):
            number, first = int(shards[order[start]]), int(rows[order[start]])
            stop = start + 1
            while (
                stop < len(order)
                and shards[order[stop]] == number
                and rows[order[stop]] == first + (stop - start)
            ):
                stop += 1
            source, source_masks = self._images(number)
            targets = order[start:stop]
            # h5py's simple-selection fast path (an int or a slice): ~15 us per one-image chunk,
            # where read_direct costs ~15x that and a fancy index ~130x (h5py 3, 128 px LZF)
            span = first if stop - start == 1 else slice(first, first + (stop - start))
            if stop - start == 1:
                targets = int(targets[0])
            images[targets] = source[span]
            if masks is not None:
                masks[targets] = source_masks[span]
            start = stop
        batch: Sample = {
            "image": torch.from_numpy(images),
            "index": torch.from_numpy(self.indices[where].astype(np.int64)),
        }
        if self.labels is not None:
            labels = self.labels[where]
            batch["label"] = torch.from_numpy(
                labels.astype(np.float32) if labels.ndim > 1 else labels.astype(np.int64)
            )
        if masks is not None:
            batch["mask"] = torch.from_numpy(masks)
        return batch

    def read_column(self, key: str) -> np.ndarray | None:
        """A per-row dataset (``split``, ``source``, ``group``, ``cluster``...) for the selected rows."""
        parts = []
        for number, rec in enumerate(self.manifest.shards):
            rows = self._row_of[self._shard_of == number]
            with h5py.File(self.directory / rec.file, "r") as h5:
                if key not in h5:
                    return None
                values = h5[key].asstr()[:] if h5[key].dtype.kind == "O" else h5[key][:]
            parts.append(values[rows])
        column = np.concatenate(parts) if parts else np.zeros(0)
        if column.dtype == object:
            column = np.array(
                [v.decode() if isinstance(v, bytes) else v for v in column], dtype=object
            )
        return column

    def close(self) -> None:
        self._datasets = {}
        for handle in self._files.values():
            handle.close()
        self._files = {}

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_files"] = {}  # never pickle open HDF5 handles into spawned workers
        state["_datasets"] = {}
        return state

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown may have torn h5py down already
            self.close()


class BatchReads(Dataset[Sample]):
    """A shard set indexed by lists of positions, each read as one batch
    (:meth:`ShardDataset.read_batch`): give a DataLoader ``sampler=BatchSampler(...)`` and
    ``batch_size=None``, so that the sampler's shuffling is kept and a worker hands over one
    collated batch instead of one dict per image. ``transform`` maps a whole batch (one
    ``float().div_(255)`` per batch, not one per image)."""

    def __init__(
        self, shards: ShardDataset, transform: Callable[[Sample], Sample] | None = None
    ) -> None:
        self.shards = shards
        self.transform = transform

    def __len__(self) -> int:
        return len(self.shards)

    def __getitem__(self, positions: Sequence[int]) -> Sample:
        batch = self.shards.read_batch(positions)
        return self.transform(batch) if self.transform is not None else batch
