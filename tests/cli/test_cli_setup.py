"""Setting up and looking at offers, affiliates and conversions from the command line, as
an operator meets them: every command says what it does, an offer can be changed after
it is made, lists filter as the admin API's do."""

from __future__ import annotations

import os
import subprocess

import typer

from clickback.cli import app
from tests.cli.conftest import CLICKBACK


def _help(*words: str) -> str:
    out = subprocess.run(
        [CLICKBACK, *words, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    return out.stdout


def test_every_subcommand_has_a_help_line() -> None:
    top = typer.main.get_command(app)
    groups = [name for name in top.list_commands(None) if hasattr(top.commands[name], "commands")]  # type: ignore[attr-defined]
    assert {"offer", "affiliate", "advertiser", "link"} <= set(groups)
    for group in groups:
        commands = top.commands[group].list_commands(None)  # type: ignore[attr-defined]
        rows = {
            line.strip("│ ").split(" ", 1)[0]: line.strip("│ ")
            for line in _help(group).splitlines()
            if line.startswith("│ ") and not line.startswith("│ --")
        }
        for name in commands:
            assert name in rows, (group, name)
            described = rows[name].removeprefix(name).strip()
            assert described, f"`clickback {group} {name}` has no help line"
