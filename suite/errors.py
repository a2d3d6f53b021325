"""The one error type users see: what went wrong, where, and how to fix it."""

from __future__ import annotations


class SynmedError(Exception):
    """An error caused by the user's input (data, config, arguments), not by a bug.

    The CLI prints it as one line (plus the fix) and exits with status 2, without a traceback.

    Args:
        what: What is wrong, naming the file, key or value.
        fix: How to make it right.
    """

    def __init__(self, what: str, fix: str | None = None) -> None:
        self.what = what
        self.fix = fix
        super().__init__(what if fix is None else f"{what}\n  fix: {fix}")


class ConfigError(SynmedError):
    """A config file or override that does not match the schema."""


class DataError(SynmedError):
    """Input data that cannot be read: corrupt, truncated, empty, inconsistent."""


class ShardError(SynmedError):
    """A shard set that fails verification (missing file, digest, count or schema mismatch)."""
