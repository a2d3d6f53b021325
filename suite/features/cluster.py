"""k-means clustering of image features, representatives per cluster, and the clustered shard set.

Seed 004 (fededemo, "data augmentation using synthetic images") clusters CLIP/EfficientNet features
with faiss k-means (k = 5), keeps the N = 25 images closest to each centroid, reports their
pairwise cosine mean/std and trains one generator per cluster. Its code took
``feature_vectors[:N]``, the first N files, as the "closest"; here the representatives are the N
members nearest their centroid, ordered by similarity.

Geometry: features are L2-normalised before k-means, so the squared Euclidean distance Lloyd's
algorithm minimises is ``2 - 2 cos``: clusters, centroids and every statistic are in cosine terms.
Centroids are renormalised to unit length, and "similarity" below is the cosine between an image
and its own cluster's centroid. The algorithm is sklearn's ``KMeans`` (Lloyd, k-means++ init,
seeded), or ``MiniBatchKMeans`` (Sculley 2010) when the feature matrix exceeds a memory budget.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import h5py
import numpy as np

import suite
from suite.artifacts.digests import sha256_file
from suite.config import require_at_least
from suite.data.shards import MANIFEST, STRING_DATASETS, Manifest, read_manifest
from suite.data.verify import verify_shard_set
from suite.data.writer import ShardSetWriter, staged_output
from suite.errors import DataError

Embedding = Literal["pca", "tsne"]
CLUSTERS_JSON = "clusters.json"
SUMMARY_JSON = "cluster_summary.json"
REPRESENTATIVES_PNG = "representatives.png"
EMBEDDING_PNG = "embedding.png"
SCRATCH = ".features-scratch"
SPLITS_FILE = "splits.json"  # written by `synmed data ingest` beside the shards
_CHUNK = 8192  # rows per block when scoring against centroids: bounds the temporaries


@dataclass(slots=True)
class ClusterStats:
    """One cluster: size, cosine to the centroid, and its representatives (nearest first)."""

    id: int
    size: int
    mean_cosine: float | None
    min_cosine: float | None
    std_cosine: float | None
    representatives: list[int]  # global sample indices (the shard ``index`` column)
    representative_rows: list[int]  # row positions in the set (manifest order)
    representative_cosine: list[float]
    # seed 004's cluster-quality numbers: pairwise cosine among the representatives
    representative_pairwise_mean: float | None
    representative_pairwise_std: float | None
    kept: bool = True  # chosen by the keep rule (:class:`KeepRule`) for per-cluster generators


@dataclass(frozen=True, slots=True)
class KeepRule:
    """Which clusters go on to a generator, by seed 004's quality numbers: the mean and std of
    the pairwise cosine among a cluster's representatives ("high mean, low std; a threshold or
    the top-2 clusters"). Unset bounds keep everything; ``top`` then keeps the best ``top`` by
    that mean among those the bounds passed."""

    min_pairwise_mean: float | None = None
    max_pairwise_std: float | None = None
    top: int | None = None

    def apply(self, stats: list[ClusterStats]) -> list[int]:
        """Mark ``stats[i].kept``; returns the kept ids (best first when ``top`` is set)."""

        def mean(s: ClusterStats) -> float:  # fewer than 2 representatives: no pairwise mean
            return (
                -1.0 if s.representative_pairwise_mean is None else s.representative_pairwise_mean
            )

        def std(s: ClusterStats) -> float:
            return 0.0 if s.representative_pairwise_std is None else s.representative_pairwise_std

        if self.top is not None and self.top < 1:
            raise DataError(f"keep top={self.top}: it keeps no cluster", "pass a top of 1 or more")
        passed = [
            s
            for s in stats
            if s.size > 0
            and (self.min_pairwise_mean is None or mean(s) >= self.min_pairwise_mean)
            and (self.max_pairwise_std is None or std(s) <= self.max_pairwise_std)
        ]
        if self.top is not None:
            passed = sorted(passed, key=lambda s: -mean(s))[: self.top]
        kept = {s.id for s in passed}
        for s in stats:
            s.kept = s.id in kept
        if not kept:
            raise DataError(
                f"cluster.keep ({self}) keeps none of the {len(stats)} clusters (their "
                "representatives' pairwise cosine means: "
                + ", ".join(f"{mean(s):.3f}" for s in stats)
                + ")",
                "loosen cluster.keep: a lower min_pairwise_mean or a higher max_pairwise_std",
            )
        return [s.id for s in passed]


@dataclass(slots=True)
class Clustering:
    labels: np.ndarray  # (N,) int32
    centroids: np.ndarray  # (k, D) float32, unit length
    similarity: np.ndarray  # (N,) float32, cosine to the own centroid
    algorithm: str
    inertia: float
    stats: list[ClusterStats] = field(default_factory=list)

    @property
    def sizes(self) -> list[int]:
        return [s.size for s in self.stats]


def l2_normalize(features: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (an all-zero row stays zero instead of becoming NaN)."""
    x = np.asarray(features, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def cluster_features(
    features: np.ndarray,
    k: int,
    *,
    seed: int = 0,
    representatives: int = 25,
    index: np.ndarray | None = None,
    memory_budget_gb: float = 2.0,
    n_init: int = 3,
) -> Clustering:
    """k-means on L2-normalised ``features`` and the ``representatives`` nearest rows per cluster.

    Args:
        features: ``(N, D)`` raw encoder features (normalised here).
        k: Number of clusters (seed 004: 5).
        seed: ``random_state`` of the k-means++ initialisation: same features, same clusters.
        representatives: Rows to keep per cluster, nearest the centroid first (seed 004: 25).
        index: Global sample index of each row, reported for representatives (default: rows).
        memory_budget_gb: Above ``N * D * 4`` bytes of this, MiniBatchKMeans replaces KMeans
            (KMeans keeps a few copies of the matrix; 120k x 2048 float32 is ~1 GB).
        n_init: k-means restarts; the lowest-inertia run is kept.
    """
    from sklearn.cluster import KMeans, MiniBatchKMeans

    n, d = features.shape
    if not 1 <= k <= n:
        raise DataError(f"k = {k} needs 1..{n} images", f"pass --k between 1 and {n}")
    if representatives < 1:
        raise DataError("--representatives must be at least 1", "pass a positive count")
    x = l2_normalize(features)
    if n * d * 4 > memory_budget_gb * 1024**3:
        model: Any = MiniBatchKMeans(
            n_clusters=k,
            random_state=seed,
            n_init=n_init,
            batch_size=4096,
            max_no_improvement=20,
        )
        algorithm = "minibatch_kmeans"
    else:
        model = KMeans(n_clusters=k, random_state=seed, n_init=n_init)
        algorithm = "kmeans"
    labels = model.fit(x).labels_.astype(np.int32)
    centroids = l2_normalize(model.cluster_centers_)
    similarity = _own_centroid_cosine(x, centroids, labels)
    rows_index = np.arange(n, dtype=np.int64) if index is None else np.asarray(index)
    stats = [
        _cluster_stats(c, x, labels, similarity, rows_index, representatives) for c in range(k)
    ]
    return Clustering(labels, centroids, similarity, algorithm, float(model.inertia_), stats)


def _own_centroid_cosine(x: np.ndarray, centroids: np.ndarray, labels: np.ndarray) -> np.ndarray:
    out = np.empty(len(x), dtype=np.float32)
    for lo in range(0, len(x), _CHUNK):  # (chunk, k) scores, never an (N, D) gather of centroids
        scores = x[lo : lo + _CHUNK] @ centroids.T
        out[lo : lo + _CHUNK] = np.take_along_axis(
            scores, labels[lo : lo + _CHUNK, None].astype(np.int64), axis=1
        )[:, 0]
    return out


def _cluster_stats(
    c: int,
    x: np.ndarray,
    labels: np.ndarray,
    similarity: np.ndarray,
    index: np.ndarray,
    representatives: int,
) -> ClusterStats:
    members = np.flatnonzero(labels == c)
    if len(members) == 0:  # k-means++ and sklearn's relocation make this rare, not impossible
        return ClusterStats(c, 0, None, None, None, [], [], [], None, None)
    sims = similarity[members]
    # nearest first; a stable sort keeps row order among ties, so the choice is deterministic
    order = np.argsort(-sims, kind="stable")[:representatives]
    rows = members[order]
    pair_mean = pair_std = None
    if len(rows) >= 2:
        gram = x[rows] @ x[rows].T
        upper = gram[np.triu_indices(len(rows), k=1)]
        pair_mean, pair_std = float(upper.mean()), float(upper.std())
    return ClusterStats(
        id=c,
        size=int(len(members)),
        mean_cosine=float(sims.mean()),
        min_cosine=float(sims.min()),
        std_cosine=float(sims.std()),
        representatives=[int(i) for i in index[rows]],
        representative_rows=[int(r) for r in rows],
        representative_cosine=[float(s) for s in similarity[rows]],
        representative_pairwise_mean=pair_mean,
        representative_pairwise_std=pair_std,
    )


# -- the clustered shard set ---------------------------------------------------------------------


def write_clustered_set(
    source: Path,
    manifest: Manifest,
    directory: Path,
    features: np.ndarray,
    labels: np.ndarray,
    attrs: dict[str, Any],
    representative: np.ndarray | None = None,
) -> Manifest:
    """Copy every row of ``source`` (all columns) into ``directory`` with ``features``/``cluster``
    (and ``representative``, each row's rank among its cluster's representatives, 0 for none).

    Input shard i becomes output shard i with the same rows in the same order; existing
    ``features``/``cluster``/``representative`` columns (a set clustered before) are replaced.
    """
    replaced = ("features", "cluster", "representative")
    largest = max((rec.count for rec in manifest.shards), default=1)
    compression = "lzf"
    if manifest.shards:
        with h5py.File(source / manifest.shards[0].file, "r") as h5:
            compression = h5["images"].compression or "none"
    writer = ShardSetWriter(directory, attrs, shard_size=max(1, largest), compression=compression)
    offset = 0
    for rec in manifest.shards:
        with h5py.File(source / rec.file, "r") as h5:
            columns = {
                key: (h5[key].asstr()[:] if key in STRING_DATASETS else h5[key][:])
                for key in h5
                if key not in replaced
            }
        for r in range(rec.count):
            row = {key: value[r] for key, value in columns.items()}
            row["features"] = features[offset + r]
            row["cluster"] = labels[offset + r]
            if representative is not None:
                row["representative"] = representative[offset + r]
            writer.add(row)
        writer.flush()  # keep the input's shard boundaries
        offset += rec.count
    return writer.close()


def _read_rows(source: Path, manifest: Manifest, rows: list[int]) -> dict[int, np.ndarray]:
    """Images at global row positions (manifest order), read shard by shard."""
    starts = np.cumsum([0] + [rec.count for rec in manifest.shards])
    wanted: dict[int, list[int]] = {}
    for row in rows:
        number = int(np.searchsorted(starts, row, side="right") - 1)
        wanted.setdefault(number, []).append(row)
    images: dict[int, np.ndarray] = {}
    for number, shard_rows in wanted.items():
        with h5py.File(source / manifest.shards[number].file, "r") as h5:
            ds = h5["images"]
            for row in shard_rows:
                images[row] = ds[row - int(starts[number])]
    return images


def _thumbnail(image: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    hwc = image[0] if image.shape[0] == 1 else np.transpose(image, (1, 2, 0))
    pil = Image.fromarray(hwc)
    if pil.size != (size, size):
        pil = pil.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(pil)


def plot_representatives(
    path: Path, source: Path, manifest: Manifest, clustering: Clustering, per_row: int
) -> None:
    """A grid: one row per cluster, its representatives left to right, nearest the centroid first."""
    from matplotlib.figure import Figure

    rows = [r for s in clustering.stats for r in s.representative_rows]
    images = _read_rows(source, manifest, rows)
    sample = next(iter(images.values()))
    channels, height, width = sample.shape
    cell = max(8, min(64, max(height, width)))
    pad = 2
    k = len(clustering.stats)
    shape = (k * (cell + pad) + pad, per_row * (cell + pad) + pad)
    mosaic = np.full(shape if channels == 1 else (*shape, 3), 255, dtype=np.uint8)
    for i, stats in enumerate(clustering.stats):
        for j, row in enumerate(stats.representative_rows):
            y, x = pad + i * (cell + pad), pad + j * (cell + pad)
            mosaic[y : y + cell, x : x + cell] = _thumbnail(images[row], cell)
    fig = Figure(figsize=(1.8 + 0.45 * per_row, 0.6 + 0.45 * k), dpi=110)
    ax = fig.add_subplot()
    ax.imshow(mosaic, cmap="gray" if channels == 1 else None, vmin=0, vmax=255)
    ax.set_xticks([])
    ax.set_yticks([pad + i * (cell + pad) + cell / 2 for i in range(k)])
    ax.set_yticklabels(
        [
            f"{s.id}: n={s.size}"
            + (f", cos {s.mean_cosine:.3f}" if s.mean_cosine is not None else "")
            for s in clustering.stats
        ],
        fontsize=8,
    )
    ax.set_title(f"{per_row} nearest the centroid per cluster (cosine, left = nearest)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)


def plot_embedding(
    path: Path,
    features: np.ndarray,
    clustering: Clustering,
    *,
    method: Embedding = "pca",
    seed: int = 0,
    max_points: int | None = None,
) -> None:
    """2D map of the normalised features coloured by cluster: PCA, or t-SNE on a subsample.

    t-SNE runs on at most 3000 points (after PCA to 50 dims, the usual preprocessing): its cost
    grows as N log N with a large constant and it is a picture, not a measurement.
    """
    from matplotlib import colormaps
    from matplotlib.figure import Figure
    from sklearn.decomposition import PCA

    n = len(features)
    limit = max_points or (20000 if method == "pca" else 3000)
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(n, size=limit, replace=False)) if n > limit else np.arange(n)
    x = l2_normalize(features[rows])
    labels = clustering.labels[rows]
    centers = None
    if method == "pca":
        pca = PCA(n_components=min(2, x.shape[1], len(x)), random_state=seed).fit(x)
        xy = pca.transform(x)
        centers = pca.transform(clustering.centroids)
        title = f"PCA of L2-normalised features ({pca.explained_variance_ratio_.sum():.0%} var.)"
    elif method == "tsne":
        from sklearn.manifold import TSNE

        reduced = PCA(n_components=min(50, x.shape[1], len(x)), random_state=seed).fit_transform(x)
        perplexity = float(min(30.0, max(2.0, (len(x) - 1) / 3)))
        xy = TSNE(
            n_components=2, init="pca", perplexity=perplexity, random_state=seed
        ).fit_transform(reduced)
        title = "t-SNE of L2-normalised features"
    else:
        raise DataError(f"unknown embedding {method!r}", "use pca or tsne")
    if xy.shape[1] == 1:  # a single image or feature: put it on a line
        xy = np.column_stack([xy[:, 0], np.zeros(len(xy))])
    k = len(clustering.stats)
    cmap = colormaps["tab10" if k <= 10 else "tab20" if k <= 20 else "turbo"]
    colors = [cmap(c % cmap.N if k <= 20 else c / max(1, k - 1)) for c in range(k)]
    fig = Figure(figsize=(6.5, 5.5), dpi=110)
    ax = fig.add_subplot()
    marker = max(1.0, min(12.0, 3000 / max(1, len(xy))))
    for c in range(k):
        sel = labels == c
        if sel.any():
            ax.scatter(xy[sel, 0], xy[sel, 1], s=marker, color=colors[c], label=str(c), alpha=0.7)
    if centers is not None and centers.shape[1] == 2:
        ax.scatter(centers[:, 0], centers[:, 1], marker="X", s=80, c=colors, edgecolors="black")
    ax.set_title(f"{title}, {len(xy)}{' sampled' if len(xy) < n else ''} of {n} images", fontsize=9)
    if k <= 20:
        ax.legend(title="cluster", fontsize=7, markerscale=max(1.0, 6 / marker), loc="best")
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path)


# -- the whole stage -----------------------------------------------------------------------------


def cluster_shard_set(
    shards: str | Path,
    out: str | Path,
    encoder: str,
    k: int,
    *,
    representatives: int = 25,
    workers: int = 1,
    batch_size: int = 64,
    seed: int = 0,
    embedding: Embedding = "pca",
    ray_address: str | None = None,
    memory_budget_gb: float = 2.0,
    classes: list[str] | None = None,
    split: str | None = None,
    keep: KeepRule | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Extract features, cluster them and write the clustered set to ``out``; returns the summary.

    Everything is checked before Ray starts or anything is written (the input set is verified
    against its manifest), and all outputs are staged: on an error ``out`` is left as it was.
    ``out`` then holds the shard set (input rows plus ``features``, ``cluster`` and
    ``representative``), ``clusters.json``, ``representatives.png``, ``embedding.png`` and
    ``cluster_summary.json``.

    ``classes`` and ``split`` choose the rows k-means sees (seed 004 clusters the training images
    of the class it doubles); every row is still copied, and the others get cluster -1. ``keep``
    marks the clusters a per-cluster generator is trained on (all by default).
    """
    from suite.features.encoders import resolve_encoder
    from suite.features.extract import extract_features

    source, out = Path(shards).resolve(), Path(out)
    require_at_least(
        {"--k": k, "--representatives": representatives, "--workers": workers,
         "--batch-size": batch_size}
    )  # fmt: skip
    if not memory_budget_gb > 0:
        raise DataError(
            f"--memory-budget-gb is {memory_budget_gb}, it must be above 0", "pass e.g. 2"
        )
    verify_shard_set(source)  # sha256 of every shard: the features and the copied rows rely on it
    manifest = read_manifest(source)
    n = manifest.count
    if n == 0:
        raise DataError(f"{source} holds no images", "cluster a non-empty shard set")
    if not 1 <= k <= n:
        raise DataError(f"k = {k} needs 1..{n} images ({source} holds {n})", f"pass --k in 1..{n}")
    if embedding not in ("pca", "tsne"):
        raise DataError(f"unknown embedding {embedding!r}", "use pca or tsne")
    spec = resolve_encoder(encoder)
    chosen = _chosen_rows(source, manifest, classes, split)
    if not 1 <= k <= len(chosen):
        raise DataError(
            f"k = {k} needs 1..{len(chosen)} images ({len(chosen)} rows of {source} are "
            f"clustered: classes={classes} split={split})",
            f"pass --k in 1..{len(chosen)}, or widen the classes/split chosen",
        )

    with staged_output(out, overwrite=overwrite, inputs=(source, spec.path)) as staging:
        scratch = staging / SCRATCH
        extraction = extract_features(
            source,
            spec,
            scratch,
            workers=workers,
            batch_size=batch_size,
            ray_address=ray_address,
        )
        shutil.rmtree(scratch, ignore_errors=True)

        start = time.perf_counter()
        index = np.concatenate([_column(source / rec.file, "index") for rec in manifest.shards])
        clustering = cluster_features(
            extraction.features[chosen],
            k,
            seed=seed,
            representatives=representatives,
            index=index[chosen],
            memory_budget_gb=memory_budget_gb,
        )
        for stats in clustering.stats:  # positions among the chosen rows -> rows of the set
            stats.representative_rows = [int(chosen[r]) for r in stats.representative_rows]
        kept = (keep or KeepRule()).apply(clustering.stats)
        cluster_of = np.full(n, -1, dtype=np.int32)
        cluster_of[chosen] = clustering.labels
        rank = np.zeros(n, dtype=np.int32)
        for stats in clustering.stats:
            rank[stats.representative_rows] = np.arange(1, len(stats.representative_rows) + 1)
        cluster_seconds = time.perf_counter() - start

        provenance = {
            "encoder": spec.describe(),
            "k": k,
            "seed": seed,
            "algorithm": clustering.algorithm,
            "geometry": "cosine (k-means on L2-normalised features)",
            "representatives": representatives,
            "classes": classes,
            "split": split,
            "keep": asdict(keep or KeepRule()),
            "source_set": str(source),
            "source_manifest_sha256": sha256_file(source / MANIFEST),
            "synmed_version": suite.__version__,
        }
        attrs = {**manifest.attrs, "clustering": provenance}
        start = time.perf_counter()
        written = write_clustered_set(
            source, manifest, staging, extraction.features, cluster_of, attrs, rank
        )
        verify_shard_set(staging, digests=False)  # what we move into place must read back whole
        if (source / SPLITS_FILE).is_file():  # same rows, same splits: the split record still holds
            shutil.copy2(source / SPLITS_FILE, staging / SPLITS_FILE)
        write_seconds = time.perf_counter() - start

        report = {
            **provenance,
            "images": n,
            "clustered": len(chosen),
            "kept": kept,
            "class_of_cluster": _class_of_cluster(source, manifest, cluster_of, k),
            "inertia": clustering.inertia,
            "mean_cosine": float(clustering.similarity.mean()),
            "clusters": [asdict(s) for s in clustering.stats],
        }
        (staging / CLUSTERS_JSON).write_text(json.dumps(report, indent=1))
        plot_representatives(
            staging / REPRESENTATIVES_PNG, source, manifest, clustering, representatives
        )
        plot_embedding(
            staging / EMBEDDING_PNG, extraction.features[chosen], clustering, method=embedding,
            seed=seed,
        )  # fmt: skip
        summary = {
            "shards": str(source),
            "out": str(out.resolve()),
            "images": n,
            "clustered": len(chosen),
            "output_shards": len(written.shards),
            "k": k,
            "kept": kept,
            "encoder": spec.describe(),
            "algorithm": clustering.algorithm,
            "seed": seed,
            "cluster_sizes": clustering.sizes,
            "mean_cosine": [s.mean_cosine for s in clustering.stats],
            "extraction": {
                "seconds": round(extraction.seconds, 3),
                "images_per_s": round(extraction.images_per_s, 2),
                "images_per_s_per_worker": round(extraction.images_per_s_per_worker, 2),
                "workers": extraction.workers,
                "actors_used": len(extraction.pids),
                "batch_size": batch_size,
            },
            "cluster_seconds": round(cluster_seconds, 3),
            "write_seconds": round(write_seconds, 3),
            "files": {
                "clusters_json": CLUSTERS_JSON,
                "representatives_png": REPRESENTATIVES_PNG,
                "embedding_png": f"{EMBEDDING_PNG} ({embedding})",
                "summary_json": SUMMARY_JSON,
            },
        }
        (staging / SUMMARY_JSON).write_text(json.dumps(summary, indent=1))
    return summary


def _chosen_rows(
    source: Path, manifest: Manifest, classes: list[str] | None, split: str | None
) -> np.ndarray:
    """Rows (manifest order) of the given classes and split, checked before any work."""
    from suite.data.shards import SPLITS

    n = manifest.count
    keep = np.ones(n, dtype=bool)
    if split is not None:
        if split not in SPLITS:
            raise DataError(f"unknown split {split!r}", f"use one of {', '.join(SPLITS)}")
        column = _columns(source, manifest, "split")
        if column is None:
            raise DataError(
                f"{source} has no split column, so split={split!r} chooses nothing",
                "ingest it with synmed data ingest (which assigns splits), or drop the split",
            )
        keep &= column == SPLITS.index(split)
    if classes is not None:
        names = manifest.class_names
        unknown = [c for c in classes if c not in names]
        labels = _columns(source, manifest, "labels")
        if unknown or labels is None or labels.ndim != 1:
            raise DataError(
                f"classes {classes}: {source} has "
                + (f"no class {', '.join(unknown)}" if unknown and labels is not None
                   else "no multiclass labels"),
                f"use class names from: {', '.join(names)}" if names else "drop the classes",
            )  # fmt: skip
        keep &= np.isin(labels, [names.index(c) for c in classes])
    return np.flatnonzero(keep)


def _columns(source: Path, manifest: Manifest, key: str) -> np.ndarray | None:
    """One column over every shard, or None where the set lacks it."""
    with h5py.File(source / manifest.shards[0].file, "r") as h5:
        if key not in h5:
            return None
    return np.concatenate([_column(source / rec.file, key) for rec in manifest.shards])


def _class_of_cluster(
    source: Path, manifest: Manifest, cluster_of: np.ndarray, k: int
) -> list[str | None]:
    """Each cluster's most frequent class (the label its synthetic images get), None unlabelled."""
    labels = _columns(source, manifest, "labels")
    if labels is None or labels.ndim != 1 or not manifest.class_names:
        return [None] * k
    out: list[str | None] = []
    for c in range(k):
        members = labels[cluster_of == c]
        counts = np.bincount(members, minlength=len(manifest.class_names))
        out.append(manifest.class_names[int(counts.argmax())] if len(members) else None)
    return out


def _column(path: Path, key: str) -> np.ndarray:
    with h5py.File(path, "r") as h5:
        return h5[key][:]
