"""Progress bars: drawn on a terminal, never when piped or with --json."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import sys
import termios
from pathlib import Path

import pytest

from modelkeep.cli import main as cli_main
from modelkeep.cli import progress
from tests.conftest import cli, write


def run_on_terminal(args: list[str], monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the CLI in-process with stderr on a pseudo-terminal; return what it drew."""
    master, slave = pty.openpty()
    # A real terminal has a size; a bare pty reports 0 columns, where nothing fits.
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    monkeypatch.setattr(progress, "DELAY", 0.0)  # draw at once, however fast the machine
    monkeypatch.setattr(sys, "stderr", os.fdopen(slave, "w", closefd=False))
    with pytest.raises(SystemExit) as exit_info:
        cli_main.main(args)
    sys.stderr.flush()
    drawn = b""
    while select.select([master], [], [], 0.5)[0]:  # the pty hands data over asynchronously
        data = os.read(master, 65536)
        if not data:
            break
        drawn += data
    os.close(slave)
    os.close(master)
    assert exit_info.value.code == 0
    return drawn.decode(errors="replace")


def test_bar_on_a_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cli("init", cwd=tmp_path)
    write(tmp_path / "model.bin", os.urandom(8 << 20))
    monkeypatch.chdir(tmp_path)
    drawn = run_on_terminal(["add", "model.bin", "--name", "m"], monkeypatch)
    assert "adding" in drawn
    assert "/8.00M" in drawn and "B/s" in drawn  # bytes of the total, and a rate
    drawn = run_on_terminal(["get", "m", "-o", "out.bin"], monkeypatch)
    assert "restoring" in drawn


def test_no_bar_with_json_on_a_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cli("init", cwd=tmp_path)
    write(tmp_path / "model.bin", os.urandom(8 << 20))
    monkeypatch.chdir(tmp_path)
    drawn = run_on_terminal(["add", "model.bin", "--name", "m", "--json"], monkeypatch)
    assert drawn == ""


def test_no_bar_when_piped(tmp_path: Path) -> None:
    cli("init", cwd=tmp_path)
    write(tmp_path / "model.bin", os.urandom(8 << 20))
    result = cli("add", "model.bin", "--name", "m", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stderr == ""
