"""The documentation: a short README with the two quick-start commands, links that resolve, commands that exist,
and a site build (mkdocs.yml) that fails on every kind of broken link.

`scripts/test.sh` builds the real site with ``mkdocs build --strict``; these tests check what that build cannot:
the README (not part of the site), the commands quoted in the pages, and that the strict build does fail.
"""

from __future__ import annotations

import logging
import re
import shlex
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
DOCS = REPO / "docs"
README_MAX_BYTES = 10 * 1024  # issue 30: a README a newcomer reads in five minutes
QUICK_START = ["bash scripts/demo.sh", "bash scripts/test.sh"]  # the developers' guide: exactly these two
# Markdown link or image target: [text](target) / ![alt](target), without a title part
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
INLINE_CODE = re.compile(r"`([^`\n]+)`")
PLACEHOLDER = re.compile(r"^[A-Z][A-Z0-9_]*$")  # COMMAND, OUT, INPUT in a quoted command line


def test_readme_is_short_and_starts_with_the_two_commands() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(text.encode("utf-8")) <= README_MAX_BYTES
    first_block = FENCE.search(text).group(1)
    commands = [line.split("#")[0].strip() for line in first_block.splitlines() if line.split("#")[0].strip()]
    assert commands == QUICK_START
    assert "bash scripts/test.sh" in (REPO / ".ci" / "run").read_text(encoding="utf-8")


def test_readme_links_resolve() -> None:
    targets = LINK.findall(README.read_text(encoding="utf-8"))
    assert targets, "the README links into docs/"
    local = [t.split("#")[0] for t in targets if not re.match(r"^[a-z]+:", t)]
    missing = [t for t in local if t and not (REPO / t).exists()]
    assert not missing, missing


def _quoted_commands(text: str) -> list[str]:
    """Every ``lesion-response ...`` command line in code blocks and inline code of a Markdown text."""
    lines = [line for block in FENCE.findall(text) for line in block.splitlines()]
    lines += INLINE_CODE.findall(text)
    found = []
    for line in lines:
        line = line.split(" #")[0].strip()
        start = line.find("lesion-response ")
        if start >= 0 and (start == 0 or line[start - 1] == "/"):  # also .venv/bin/lesion-response
            found.append(line[start:])
    return found


def _subcommands(command) -> dict:
    """A command group's subcommands by name ({} for a command); typer may vendor its own click classes."""
    return getattr(command, "commands", {})


def _command_problem(root, line: str) -> str | None:
    """Why ``line`` does not name an existing command and options of the click tree ``root``, or None."""
    command, path = root, ["lesion-response"]
    tokens = [t.strip("[]") for t in shlex.split(line)[1:]]
    expect_command = True
    for token in tokens:
        if token.startswith("-") and len(token) > 1:
            option = token.split("=")[0]
            names = {n for p in command.params for n in (*p.opts, *p.secondary_opts)} | {"--help"}
            if option not in names:
                return f"{' '.join(path)} has no option {option}"
        elif token in _subcommands(command):
            command = _subcommands(command)[token]
            expect_command = bool(_subcommands(command))
            path.append(token)
        elif expect_command and command is root and not PLACEHOLDER.match(token):
            return f"no command {token!r}"
        else:
            expect_command = False
    return None


def test_commands_quoted_in_the_docs_exist() -> None:
    """Every ``lesion-response COMMAND --option`` in README, docs/ and the model card names a real command and
    real options, so that a renamed command or option fails here until the pages follow."""
    import typer

    from LesionResponseLib.cli import app

    root = typer.main.get_command(app)
    pages = [README, REPO / "Resources" / "Models" / "MODEL_CARD.md", *sorted(DOCS.rglob("*.md"))]
    quoted = {(page.relative_to(REPO), line) for page in pages for line in _quoted_commands(page.read_text("utf-8"))}
    assert len(quoted) > 40  # the guides quote many commands; a parser that finds none would pass vacuously
    problems = [f"{page}: {line!r}: {problem}" for page, line in sorted(quoted)
                if (problem := _command_problem(root, line))]
    assert not problems, "\n".join(problems)


def test_the_command_check_catches_a_wrong_command_and_option() -> None:
    import typer

    from LesionResponseLib.cli import app

    root = typer.main.get_command(app)
    assert _command_problem(root, "lesion-response analyze INPUT -o OUT --psf-fwhm-mm 5") is None
    assert _command_problem(root, "lesion-response review OUT reject tp1-L0001 --reason x") is None
    assert "no option --psf" in _command_problem(root, "lesion-response analyze INPUT --psf 5")
    assert "no command 'analyse'" in _command_problem(root, "lesion-response analyse INPUT")


@pytest.fixture(scope="module")
def defective_build(tmp_path_factory) -> tuple[str, Path]:
    """The site's configuration (hooks included) on a copy of docs/ with three defects: a link to a missing page, a
    link to a missing anchor, a page left out of the nav. Returns the build's warnings and its site folder (MkDocs
    writes the pages before a strict build aborts)."""
    from mkdocs.commands.build import build
    from mkdocs.config import load_config
    from mkdocs.exceptions import Abort

    work = tmp_path_factory.mktemp("docs-build")
    docs = work / "docs"
    shutil.copytree(DOCS, docs)
    index = docs / "index.md"
    index.write_text(index.read_text("utf-8") + "\n[a](no-such-page.md) [b](methods/suv.md#no-such-anchor)\n")
    (docs / "not-in-nav.md").write_text("# Left out of the nav\n")
    config = load_config(config_file=str(REPO / "mkdocs.yml"), docs_dir=str(docs), site_dir=str(work / "site"),
                         strict=True)
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logger = logging.getLogger("mkdocs")
    logger.addHandler(handler)
    try:
        with pytest.raises(Abort, match="3 warnings"):
            build(config)
    finally:
        logger.removeHandler(handler)
    return " ".join(r.getMessage() for r in records), work / "site"


def test_strict_build_fails_on_each_broken_link_kind(defective_build) -> None:
    """Exactly the three planted defects are reported: the pages themselves build clean, and each kind is caught."""
    warnings, _ = defective_build
    assert "no-such-page.md" in warnings
    assert "no-such-anchor" in warnings
    assert "not-in-nav.md" in warnings


def test_cli_reference_covers_every_command(defective_build) -> None:
    """The generated reference page of the site has a section for every command and subcommand of the app."""
    import typer

    from LesionResponseLib.cli import app

    def paths(command, prefix: str) -> list[str]:
        return [prefix] + [p for name, sub in _subcommands(command).items() for p in paths(sub, f"{prefix} {name}")]

    expected = paths(typer.main.get_command(app), "lesion-response")[1:]
    page = (defective_build[1] / "researcher-guide" / "cli" / "index.html").read_text("utf-8")
    assert len(expected) > 15
    assert not [p for p in expected if f'id="{p.replace(" ", "-")}"' not in page]
