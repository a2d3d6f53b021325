"""`python -m suite` is the same as the `synmed` command."""

from __future__ import annotations

import sys

from suite.cli import main

if __name__ == "__main__":
    sys.exit(main())
