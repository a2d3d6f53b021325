"""The contracts between stages that are not shard sets.

- :mod:`suite.artifacts.digests`: the one sha256 helper every stage uses;
- :mod:`suite.artifacts.exports`: export folders (generator, SSL backbone, classifier) with one
  metadata file naming their kind, version, provenance and the sha256 of every file;
- :mod:`suite.artifacts.results`: the versioned evaluation-result schema every evaluator writes and
  ``synmed report`` reads.

Shard sets (``suite.data.shards``) are the data contract; these are the model and result contracts.
"""
