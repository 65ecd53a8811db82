"""The `docpilot` command (the console script): `--version` and a hot verb on the lean path
(lean.py), anything else, or anything the lean reader is unsure of, through the full parser
(cli.py, imported only then)."""

from __future__ import annotations

import sys

from . import lean


def main() -> int:
    argv = sys.argv[1:]
    if argv == ["--version"]:  # without the parser: as cheap as the hot verbs
        from .. import __version__

        print(f"docpilot {__version__}")
        return 0
    if argv and argv[0] in lean.VERBS:
        code = lean.main(argv)
        if code is not None:
            return code
    from . import cli

    return cli.main(argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
