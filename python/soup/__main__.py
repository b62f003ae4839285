"""``python -m soup``: the soup command line.

``rpc server-start`` (what a host spawns) goes straight to ``soup.cliplugin``: the
plugin never imports the host commands and their parser (``soup.cli``).
"""

from __future__ import annotations

import sys

from soup import cliplugin
from soup.cliplugin import COMMAND


def main() -> int:
    """The ``soup`` command (``python -m soup`` and the installed script)."""
    argv = sys.argv[1:]
    if tuple(argv[: len(COMMAND)]) == COMMAND:
        return cliplugin.main(argv[len(COMMAND) :])
    from soup import cli  # noqa: PLC0415

    return cli.main(argv)


if __name__ == "__main__":
    sys.exit(main())
