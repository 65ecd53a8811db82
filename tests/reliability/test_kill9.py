"""kill -9 of the real daemon, hundreds of times, under concurrent clients: nothing acknowledged
is lost or duplicated, and nothing appears that was not sent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from . import kill9

# The default suite kills 30 times; the long mode (`pytest -m long`, run by CI) 200 times.
QUICK_KILLS = 30
LONG_KILLS = int(os.environ.get("DOCPILOT_KILL9_ROUNDS", "200"))


def test_kill9_under_concurrent_clients(tmp_path: Path) -> None:
    _kill(tmp_path, QUICK_KILLS)


@pytest.mark.long
def test_kill9_under_concurrent_clients_long(tmp_path: Path) -> None:
    _kill(tmp_path, LONG_KILLS)


def _kill(tmp_path: Path, kills: int) -> None:
    figures = kill9.run(tmp_path / "home", kills=kills, clients=6)
    print(
        f"\nkill -9: kills {figures.kills}, changes sent {figures.sent}, acknowledged {figures.acknowledged}, "
        f"lost {figures.lost}, duplicated {figures.duplicated}, unexpected {figures.unexpected}"
    )
    assert figures.kills == kills
    assert figures.acknowledged > kills  # the clients really got work done between kills
    assert figures.violations == 0, figures.examples
