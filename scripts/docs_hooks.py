"""MkDocs hooks (mkdocs.yml ``hooks:``): pages whose one source lives outside docs/.

- ``researcher-guide/cli.md``: the command-line reference, generated from the typer app at every build by
  typer's own generator (``typer LesionResponseLib.cli utils docs``), so it always matches the commands.
- ``model-card.md``: ``Resources/Models/MODEL_CARD.md`` as it is (the card stays beside the model it describes).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

REPO = Path(__file__).resolve().parents[1]
CLI_PAGE = "researcher-guide/cli.md"
MODEL_CARD_PAGE = "model-card.md"
MODEL_CARD = REPO / "Resources" / "Models" / "MODEL_CARD.md"
CLI_INTRO = (
    "Generated from the code at every build of this site (typer's `utils docs`); "
    "`lesion-response COMMAND --help` prints the same. Task-oriented examples: "
    "[Researcher's guide](index.md).\n\n"
)


def cli_reference() -> str:
    """The Markdown reference of every ``lesion-response`` command and option, from the typer app."""
    result = subprocess.run(
        [sys.executable, "-m", "typer", "LesionResponseLib.cli", "utils", "docs", "--name", "lesion-response",
         "--title", "Command-line reference"],
        cwd=REPO, capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"could not generate the CLI reference (typer utils docs): {result.stderr.strip()}")
    title, _, body = result.stdout.partition("\n")
    return f"{title}\n\n{CLI_INTRO}{body.lstrip()}"


def on_files(files: Files, config: MkDocsConfig) -> Files:
    files.append(File.generated(config, CLI_PAGE, content=cli_reference()))
    files.append(File.generated(config, MODEL_CARD_PAGE, content=MODEL_CARD.read_text(encoding="utf-8")))
    return files
