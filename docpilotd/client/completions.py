"""Shell completion scripts for `docpilot`, generated from its own argument parser by shtab.

Why shtab: it writes a static script per shell (bash, zsh, fish) from the argparse parser, so a
<TAB> runs no Python, and the verbs, aliases, options and choices it completes are exactly the
parser's (client/cli.py's build_parser over client/verbs.py). `docpilot init SHELL` (hooks.py)
writes the script beside the hook file; the hook loads it at the first <TAB>, never at start-up.

Invariants: shtab is imported here only, and this module only by `docpilot init` (the client's
other verbs never pay for it: tests/test_architecture.py); generating changes nothing but the
parser instance it builds for itself.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from importlib import resources

import shtab

# Where each shell looks for the completion of `docpilot` in the directory `init` adds.
FILENAMES = {"bash": "docpilot.bash", "zsh": "_docpilot", "fish": "docpilot.fish"}


def builtin_templates() -> list[str]:
    """The built-in template names (render/templates/NAME.md.j2), read as files: no Jinja2."""
    folder = resources.files("docpilotd").joinpath("render", "templates")
    return sorted(
        entry.name.removesuffix(".md.j2") for entry in folder.iterdir()
        if entry.name.endswith(".md.j2") and not entry.name.startswith("_")
    )


def script(shell: str, build_parser: Callable[[], argparse.ArgumentParser]) -> str:
    """The completion script of `docpilot` for `shell` (bash, zsh or fish), from the parser
    `build_parser` (cli.py's, passed in: cli imports the verbs that import this module's caller)."""
    parser = build_parser()
    _offer_templates(parser)
    return shtab.complete(parser, shell)


def _offer_templates(parser: argparse.ArgumentParser) -> None:
    """`generate -t <TAB>` offers the built-in names (a user's own are still accepted: this parser
    only generates the script, it never reads a command line)."""
    names = builtin_templates()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                for option in sub._actions:
                    if "--template" in option.option_strings and sub.prog.split()[-1] in ("generate", "gen", "doc"):
                        option.choices = names
