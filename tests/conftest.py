"""Fixtures shared by the tests; plain helper functions are in ``helpers.py``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# ``from helpers import ...`` from any sub-folder, whatever the import mode and the folder pytest starts from
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture
def runner(monkeypatch):
    """A typer ``CliRunner`` for ``lobgym.cli.app``, with lobgym's console wide enough not to wrap paths and
    messages."""
    from typer.testing import CliRunner

    from lobgym import cli

    monkeypatch.setattr(cli.console, "width", 1000)  # no wrapping inside paths and messages
    return CliRunner()
