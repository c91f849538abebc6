"""The documentation site builds offline in strict mode, and its CLI reference lists every command and option."""

from __future__ import annotations

import argparse
import html
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli import build_parser

from .conftest import REPO

PLACEHOLDER = "<!-- cli-reference -->"


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return {name: sub for action in parser._subparsers._actions if isinstance(action, argparse._SubParsersAction)
            for name, sub in action.choices.items()}


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site built from this checkout with `mkdocs build --strict` (warnings, broken links fail)."""
    for module in ("mkdocs", "material"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"building the docs needs {module} (the test and docs extras install it)")
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    build = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
                            str(REPO / "mkdocs.yml"), "--site-dir", str(out)],
                           cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert build.returncode == 0, build.stdout + build.stderr
    return out


def text_of(fragment: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", fragment))


def sections(page: str) -> dict[str, str]:
    """The CLI page's HTML by its second-level headings' ids."""
    parts = re.split(r'<h2 id="([^"]+)"', page)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


@pytest.mark.slow
def test_cli_page_lists_every_command_and_option(site):
    page = (site / "cli" / "index.html").read_text(encoding="utf-8")
    assert PLACEHOLDER not in page
    by_id = sections(page)
    parser = build_parser()
    commands = subcommands(parser)
    assert {"run", "report", "figure4", "verify", "worker", "train"} <= set(commands)
    top = text_of(by_id["python-m-bench"])
    for option in (s for a in parser._actions for s in a.option_strings):
        assert option in top
    for name, sub in commands.items():
        assert name in by_id, f"no section for the {name!r} command"
        text = text_of(by_id[name])
        assert f"python -m bench {name}" in text  # its usage line
        for action in sub._actions:
            for option in action.option_strings:
                assert option in text, f"{name}: {option} missing from the CLI reference"
            if not action.option_strings:  # positional arguments, under their metavar
                assert (action.metavar or action.dest) in text
            if action.help and action.help != argparse.SUPPRESS and "%(" not in action.help:
                assert " ".join(action.help.split()) in text, f"{name}: help of {action.dest} missing"


def test_cli_reference_is_generated_not_committed():
    source = (REPO / "docs" / "cli.md").read_text(encoding="utf-8")
    assert PLACEHOLDER in source and "--target-bpp" not in source


def test_readme_is_short_and_its_links_resolve():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 150
    assert "make bench" in readme and "make test" in readme  # CI runs the README's test command
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme)
    local = [link for link in links if "://" not in link]
    assert local and all((REPO / link).is_file() for link in local), [x for x in local if not (REPO / x).is_file()]
