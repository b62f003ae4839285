"""``python -m soup``: the soup command line."""

from __future__ import annotations

import sys

from soup.cli import main

if __name__ == "__main__":
    sys.exit(main())
