"""``python -m soup``: the soup command line.

``rpc server-start`` (what a host spawns) goes straight to ``soup.lab.cliplugin``: the
plugin never imports the host commands and their parser (``soup.lab.cli``).
"""

from __future__ import annotations

import gc
import sys


def main() -> int:
    """The ``soup`` command (``python -m soup`` and the installed script)."""
    # The imports allocate some 10^5 objects that all live until the process exits: cycle
    # collections during them only scan those again and again, so collection is off until
    # the command has its modules (cliplugin.end_startup freezes them and turns it on).
    gc.disable()
    from soup.lab import cliplugin  # noqa: PLC0415

    argv = sys.argv[1:]
    if argv[:1] == ["check"]:
        from soup.lab.check import cli as check_cli  # noqa: PLC0415

        return check_cli.main(argv[1:])
    if tuple(argv[: len(cliplugin.COMMAND)]) == cliplugin.COMMAND:
        return cliplugin.main(argv[len(cliplugin.COMMAND) :])
    from soup.lab import cli  # noqa: PLC0415

    return cli.main(argv)


if __name__ == "__main__":
    sys.exit(main())
