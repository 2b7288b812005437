"""Writes docs/configuration.md from the settings declared in clickback.config."""

from pathlib import Path

from clickback.config import SETTINGS

lines = [
    "# Configuration",
    "",
    "Every setting is an environment variable, read once at start.",
    "",
    "| variable | default | meaning |",
    "|---|---|---|",
]
for name, (default, doc) in SETTINGS.items():
    shown = f"`{default}`" if default else "(empty)"
    lines.append(f"| `{name}` | {shown} | {doc} |")
Path(__file__).resolve().parent.parent.joinpath("docs", "configuration.md").write_text(
    "\n".join(lines) + "\n"
)
