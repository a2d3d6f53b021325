"""Features and clustering: image encoders, Ray Data feature extraction, k-means and representatives.

``synmed cluster`` (seed 004's clustering stage, with its top-N bug fixed) reads a shard set, encodes
every image with a named encoder (:mod:`suite.features.encoders`) in a Ray actor pool
(:mod:`suite.features.extract`), clusters the L2-normalised features with k-means and writes the
set again with ``features`` and ``cluster`` columns, the per-cluster representatives and plots
(:mod:`suite.features.cluster`).
"""

from __future__ import annotations
