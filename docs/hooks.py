"""MkDocs hook: the CLI reference (docs/cli.md) is generated from ``bench.cli.build_parser()`` at build time.

``cli.md`` holds the placeholder ``<!-- cli-reference -->``; ``on_page_markdown`` replaces it with the usage,
description and every option of the top-level parser and of every subcommand, so the page cannot drift from
the code. Nothing generated is committed.
"""

from __future__ import annotations

import argparse
import html
import os
import sys
from pathlib import Path

PLACEHOLDER = "<!-- cli-reference -->"
ROOT = Path(__file__).resolve().parents[1]
PROG = "python -m bench"
USAGE_WIDTH = "100"


def _text(value: str) -> str:
    """Plain text as Markdown that renders as itself: HTML and Markdown specials escaped, no pipes."""
    text = html.escape(" ".join(value.split()), quote=False)
    for ch in "\\`*_[]":
        text = text.replace(ch, "\\" + ch)
    return text.replace("|", "&#124;")


def _code(value: str) -> str:
    """An inline code span (backticks in the value made safe)."""
    value = str(value).replace("|", "&#124;")
    fence = "``" if "`" in value else "`"
    return f"{fence}{value}{fence}"


def subcommands(parser: argparse.ArgumentParser) -> dict[str, tuple[str, argparse.ArgumentParser]]:
    """Subcommand name -> (its one-line help, its parser), in the parser's order."""
    found: dict[str, tuple[str, argparse.ArgumentParser]] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for name, sub in action.choices.items():
                found[name] = (helps.get(name, ""), sub)
    return found


def _argument(action: argparse.Action) -> str:
    """What follows the option on the command line: metavar, choices or nothing."""
    if action.nargs == 0:
        return ""
    if action.metavar is not None:
        metavar = action.metavar if isinstance(action.metavar, str) else " ".join(action.metavar)
    elif action.choices is not None:
        metavar = "{" + ",".join(map(str, action.choices)) + "}"
    else:
        metavar = action.dest.upper() if action.option_strings else action.dest
    if action.nargs in ("*",):
        return f"[{metavar} ...]"
    if action.nargs == "+":
        return f"{metavar} [{metavar} ...]"
    if action.nargs == "?":
        return f"[{metavar}]"
    return metavar


def _default(action: argparse.Action) -> str:
    default = action.default
    if action.nargs == 0 or default in (None, argparse.SUPPRESS) or default == [] or action.required:
        return ""
    return _code(",".join(map(str, default)) if isinstance(default, (list, tuple)) else default)


def _help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    if not action.help or action.help == argparse.SUPPRESS:
        return ""
    text = parser._get_formatter()._expand_help(action)
    if action.choices is not None and action.metavar is not None:
        text += " (one of: " + ", ".join(map(str, action.choices)) + ")"
    return _text(text)


def options_table(parser: argparse.ArgumentParser) -> str:
    rows = ["| argument | value | default | meaning |", "|---|---|---|---|"]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) or action.help == argparse.SUPPRESS:
            continue
        names = ", ".join(_code(s) for s in action.option_strings) or _code(action.metavar or action.dest)
        if action.required and action.option_strings:
            names += " (required)"
        if action.option_strings:
            value = _argument(action)
        else:  # a positional argument: its name is the first column; its choices, if any, the value
            value = "{" + ",".join(map(str, action.choices)) + "}" if action.choices is not None else ""
        rows.append(f"| {names} | {_code(value) if value else ''} | {_default(action)} | {_help(parser, action)} |")
    return "\n".join(rows)


def _usage(parser: argparse.ArgumentParser) -> str:
    return parser.format_usage().strip()


def reference(parser: argparse.ArgumentParser) -> str:
    """The whole reference as Markdown: the top-level command, then one section per subcommand."""
    parts = ["## `" + PROG + "`", "", _text(parser.description or ""), "", "```text", _usage(parser), "```", "",
             "| command | what it does |", "|---|---|"]
    commands = subcommands(parser)
    parts += [f"| [`{name}`](#{name}) | {_text(summary)} |" for name, (summary, _) in commands.items()]
    parts += ["", options_table(parser), ""]
    for name, (_, sub) in commands.items():
        parts += [f"## `{name}` {{#{name}}}", "", _text(sub.description or ""), "", "```text", _usage(sub), "```", "",
                  options_table(sub), ""]
    return "\n".join(parts)


def build_parser() -> argparse.ArgumentParser:
    """``bench.cli.build_parser()`` of this checkout (not of another installed copy), named as users type it."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import bench.cli

    if not Path(bench.cli.__file__).resolve().is_relative_to(ROOT):
        raise RuntimeError(f"the CLI reference must come from {ROOT / 'bench'}, but bench is {bench.cli.__file__}")
    argv0, sys.argv[0] = sys.argv[0], "bench"  # prog "python -m bench" (not "codec-bench")
    try:
        return bench.cli.build_parser()
    finally:
        sys.argv[0] = argv0


def cli_reference() -> str:
    """The reference of this checkout's parser, usage lines wrapped at the same width on every machine."""
    columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = USAGE_WIDTH
    try:
        return reference(build_parser())
    finally:
        if columns is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = columns


def on_page_markdown(markdown: str, page, config, files) -> str:
    if PLACEHOLDER not in markdown:
        return markdown
    return markdown.replace(PLACEHOLDER, cli_reference())
