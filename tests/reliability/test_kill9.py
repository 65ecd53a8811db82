"""kill -9 of the real daemon, hundreds of times, under concurrent clients: nothing acknowledged
is lost or duplicated, and nothing appears that was not sent."""

from __future__ import annotations

import os
from pathlib import Path

from . import kill9

KILLS = int(os.environ.get("DOCPILOT_KILL9_ROUNDS", "200"))


def test_kill9_under_concurrent_clients(tmp_path: Path) -> None:
    figures = kill9.run(tmp_path / "home", kills=KILLS, clients=6)
    print(
        f"\nkill -9: kills {figures.kills}, changes sent {figures.sent}, acknowledged {figures.acknowledged}, "
        f"lost {figures.lost}, duplicated {figures.duplicated}, unexpected {figures.unexpected}"
    )
    assert figures.kills == KILLS
    assert figures.acknowledged > KILLS  # the clients really got work done between kills
    assert figures.violations == 0, figures.examples
