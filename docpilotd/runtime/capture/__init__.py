"""Shell capture, daemon side: every command a hooked shell ran, once, in the session it was
typed for, within about 100 ms while the daemon runs.

- `markers`:  `spool/active/`, what hooks read (without a fork) to know whether and where to record;
- `spool`:    the files hooks append to, read in order and in bounded batches, and retired;
- `recorder`: one captured command into its session (capture ids, privacy, timestamps), with a
              typed `Outcome`;
- `ids`:      capture ids and the per-session marks that make recording exactly once.

Dependencies point one way: spool -> recorder -> engine and privacy; handlers use the recorder
and the spool, never the other way round.
"""

from .markers import Markers
from .recorder import Outcome, Recorder
from .spool import Spool

__all__ = ["Markers", "Outcome", "Recorder", "Spool"]
