"""The config file: defaults for options, the command line wins, bad lines are exit 2."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from segdl.cli.exitcodes import ExitCode
from segdl.cli.main import main
from tests.server import FaultServer

MakeData = Callable[..., bytes]


def run_cli(*argv: str) -> tuple[int, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=stdout, stderr=stderr)
    return code, stdout.getvalue(), stderr.getvalue()


def _user_config(text: str) -> Path:
    path = Path(os.environ["XDG_CONFIG_HOME"]) / "segdl" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_config_sets_defaults_and_the_command_line_wins(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """Values from config.toml apply; the same option on the command line overrides them."""
    fault_server.add_file("/f.bin", make_data(3 << 20))
    _user_config(
        f'dir = "{tmp_path / "from-config"}"\nconnections = 1\n'
        'header = ["X-From: config"]\nquiet = true\n'
    )
    code, _, err = run_cli(fault_server.url("/f.bin"))
    assert code == ExitCode.OK and err == ""
    assert (tmp_path / "from-config/f.bin").exists()
    assert all(r.header("X-From") == "config" for r in fault_server.requests)
    assert len({r.connection_id for r in fault_server.requests}) == 1
    fault_server.clear_log()
    code, _, err = run_cli("-x", "3", "--min-split-size", "1M", "-o", str(tmp_path / "o.bin"),
                           fault_server.url("/f.bin"))  # fmt: skip
    assert code == ExitCode.OK, err
    assert (tmp_path / "o.bin").exists()  # -o wins over the configured dir
    assert len({r.header("Range") for r in fault_server.requests}) >= 3


@pytest.mark.parametrize(
    ("text", "line", "says"),
    [
        (
            "connections = 4\nconections = 8\n",
            2,
            "unknown key 'conections' (did you mean 'connections'?)",
        ),
        ('\n\nconnections = "many"\n', 3, "connections = 'many' is not valid"),
        ('quiet = "yes"\n', 1, "quiet is a switch: true or false"),
        ('if-exists = "clobber"\n', 1, "is not one of error, skip, overwrite, rename"),
        ('limit-rate = "fast"\n', 1, "limit-rate = 'fast' is not a size"),
        ('output = "x"\n', 1, "'output' cannot be set in a config file"),
        ("connections = [\n", 1, "not valid TOML"),
    ],
)
def test_a_bad_config_is_one_usage_line_naming_file_and_line(
    text: str, line: int, says: str, tmp_path: Path
) -> None:
    """Unknown key, wrong type or value, broken TOML: exit 2, one line with file and line."""
    path = _user_config(text)
    code, _, err = run_cli("-q", "-o", str(tmp_path / "x"), "http://127.0.0.1:9/x")
    assert code == ExitCode.USAGE
    assert err.count("\n") == 1 and says in err, err
    assert str(path) in err
    if "TOML" not in says:
        assert f"line {line}:" in err


def test_no_config_and_an_explicit_config_path(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """--no-config ignores even a broken user config; --config PATH reads that file instead."""
    fault_server.add_file("/f.bin", make_data(100))
    _user_config("not an option = 1\n")
    code, _, err = run_cli("--no-config", "-q", "-d", str(tmp_path), fault_server.url("/f.bin"))
    assert code == ExitCode.OK, err
    other = tmp_path / "other.toml"
    other.write_text(f'dir = "{tmp_path / "elsewhere"}"\nquiet = true\n')
    code, _, err = run_cli("--config", str(other), fault_server.url("/f.bin"))
    assert code == ExitCode.OK, err
    assert (tmp_path / "elsewhere/f.bin").exists()
    code, _, err = run_cli("--config", str(tmp_path / "missing.toml"), fault_server.url("/f.bin"))
    assert code == ExitCode.USAGE and "does not exist" in err
