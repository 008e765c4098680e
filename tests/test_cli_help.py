"""``lobgym <command> --help`` shows every default the source declares, and ``lobgym --version``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from lobgym import cli, provenance

DEFAULT_IN_HELP = re.compile(r"\[default: [^\]]*\]")


def _commands() -> dict:
    """Every subcommand of the ``lobgym`` group (typer's click command objects)."""
    return dict(typer.main.get_command(cli.app).commands)


def _expected_defaults(command) -> list[str]:
    """The ``[default: ...]`` texts the source declares for ``command``: written in a help text, given
    as ``show_default="..."`` (typer shows it in parentheses), or a plain value default."""
    out = []
    for param in command.params:
        if param.name == "help":
            continue
        help_text = getattr(param, "help", None) or ""
        out += DEFAULT_IN_HELP.findall(help_text)
        show = getattr(param, "show_default", None)
        if isinstance(show, str):
            out.append(f"[default: ({show})]")
        elif show is not False and isinstance(param.default, int | float | str | Path) \
                and not isinstance(param.default, bool) and not getattr(param, "is_flag", False):
            out.append(f"[default: {param.default}]")
    return out


def test_the_scan_finds_the_commands_and_their_described_defaults():
    commands = _commands()
    assert {"train", "evaluate", "study", "bench", "validate"} <= set(commands)
    described = [p for c in commands.values() for p in c.params
                 if isinstance(getattr(p, "show_default", None), str) or "[default:" in (getattr(p, "help", "") or "")]
    assert len(described) >= 8  # train --timesteps/--name, study --out/--workers/--address, ...


@pytest.mark.parametrize("name", sorted(_commands()))
def test_help_shows_every_default_the_source_declares(name, monkeypatch):
    monkeypatch.setenv("COLUMNS", "2000")  # one line per option: no wrapping inside a default
    result = CliRunner().invoke(cli.app, [name, "--help"])
    assert result.exit_code == 0, result.output
    shown = " ".join(result.output.split())
    missing = [d for d in _expected_defaults(_commands()[name]) if " ".join(d.split()) not in shown]
    assert not missing, f"lobgym {name} --help lacks {missing}:\n{result.output}"


@pytest.mark.slow
@pytest.mark.parametrize("entry", [["-m", "lobgym"], ["-c", "from lobgym.cli import app; app()"]])
def test_version_prints_the_version_and_the_checkouts_revision(entry):
    """``python -m lobgym --version`` and the console script's entry point (``lobgym.cli:app``)."""
    proc = subprocess.run([sys.executable, *entry, "--version"], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == provenance.version_line()
    assert proc.stdout.startswith(f"lobgym {provenance.lobgym_version()}")
    rev = provenance.source_revision()
    assert (rev.commit in proc.stdout) if rev else ("git" not in proc.stdout)
