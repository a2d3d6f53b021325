"""Generator quality: FID and Fréchet distances on any encoder, KID, precision/recall and
density/coverage of a synthetic shard set against a real one (``synmed evaluate generator``).

:mod:`.metrics` holds the sample-based metrics, :mod:`.stats` the per-shard Ray statistics job and
the reference-statistics cache, :mod:`.job` the evaluation and its ``result.json``, :mod:`.cli`
the command.
"""
