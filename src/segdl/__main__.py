"""``python -m segdl``: the command-line tool."""

from segdl.cli.main import run

if __name__ == "__main__":
    run()
