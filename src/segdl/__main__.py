"""``python -m segdl`` and the ``segdl`` command: the command-line tool.

A Ctrl-C while the command line's own modules are still being imported ends it with exit
130 and nothing else (not a traceback): nothing had begun. Earlier than that, the
interpreter itself is starting, which no program can take over.
"""

import sys

try:
    from segdl.cli.main import run
except KeyboardInterrupt:
    sys.exit(130)


def entry() -> None:
    """The ``segdl`` command (pyproject's ``[project.scripts]``)."""
    run()


if __name__ == "__main__":
    run()
