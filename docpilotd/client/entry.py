"""The `docpilot` command: `--version` and a hot verb on the lean path (lean.py), anything else, or
anything the lean reader is unsure of, through the full parser (cli.py, imported only then).

Two ways in. The console script pip writes (`docpilot` on PATH) calls `main` after the
interpreter's `site` and the launcher's `import re`. The `docpilot` function of a hooked shell
(docpilotd/shell/, paths filled in by client/hooks.py) runs this file instead:
`PYTHON -I -S .../docpilotd/client/entry.py ARGS`, the interpreter without site (its .pth files
cost more than a note) and without the launcher, and this file puts the directory that holds the
package on sys.path itself. A verb the lean path does not take gets site first (`site.main()`, and
the package's own directory as a site directory), so the full client finds what the console script
finds (shtab, for `init`). -I leaves out PYTHON* variables and the user's site directory, which
the client does not need; `command docpilot` is the console script.

Invariants: run as a file, nothing is imported before the package's directory is first on
sys.path (the package found is the one the hook was written for); the exit code is main's.
"""

from __future__ import annotations

import sys

if __name__ == "__main__" and not __package__:  # the hooks' fast start: run as a file
    sys.path.insert(0, __file__.rpartition("/")[0].rpartition("/")[0].rpartition("/")[0] or "/")
    from docpilotd.client.entry import main as _main

    sys.exit(_main())

from . import lean  # after the fast start (which puts the package on sys.path)


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
    if sys.flags.no_site:
        _add_site()
    from . import cli

    return cli.main(argv)


def _add_site() -> None:
    """What site gives the console script, for the full client started without it (the fast
    start): site-packages and their .pth files, and the package's own directory as a site
    directory (a user or development install -I left out), kept first."""
    import os
    import site

    package_dir = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    site.main()
    if package_dir not in site.getsitepackages():
        site.addsitedir(package_dir)
    if package_dir in sys.path:
        sys.path.remove(package_dir)
    sys.path.insert(0, package_dir)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
