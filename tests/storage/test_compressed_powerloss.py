"""Power loss while generations are compressed: the power-loss exploration of the reliability
suite (tests/reliability/powerloss.py), run with the daemon's compressing store and more than one
generation kept, so that checkpoints compress older generations and trim the journal by the
sequences of compressed files.

For a crash at every file-system call, every disk state the model allows must recover every
acknowledged change exactly once, also with every session's own snapshot destroyed (then only
the generations, compressed ones included, and the journal are left).
"""

from __future__ import annotations

import asyncio
import random

from docpilotd.config import Config
from docpilotd.runtime.engine import Engine
from docpilotd.storage import backups
from docpilotd.storage.store import SessionStore
from tests.reliability import powerloss
from tests.reliability.powerloss import LAYOUT, InlineExecutor, ModelFileOps, Outcome, Violations, check_state, new_ops

KEPT = 3


def run(crash_call: int | None = None) -> tuple[ModelFileOps, Outcome]:
    ops = new_ops()
    if crash_call is not None:
        ops.crash_at(crash_call)
    engine = Engine(Config(durability="always", backups_kept=KEPT),
                    SessionStore(LAYOUT, ops, backups_kept=KEPT, compress_backups=True))
    engine.pool.shutdown()
    engine.pool = InlineExecutor()  # type: ignore[assignment]
    outcome = Outcome()
    asyncio.run(powerloss._workload(engine, outcome, clients=3, notes=9, checkpoint_every=3))
    outcome.calls = ops.calls
    return ops, outcome


def test_the_workload_makes_compressed_generations() -> None:
    ops, outcome = run()
    names = ops.listdir(LAYOUT.backups)
    assert any(n.endswith(backups.COMPRESSED_SUFFIX) for n in names), names
    by_session, _ = backups.scan(ops, LAYOUT.backups)
    for generations in by_session.values():
        assert not generations[-1].compressed and all(g.compressed for g in generations[:-1])
    assert outcome.acked


def test_power_loss_at_every_call_of_compressing_checkpoints_loses_nothing() -> None:
    _, full = run()
    rng = random.Random(4)
    violations = Violations()
    states = 0
    for call in range(1, full.calls + 2):
        ops, outcome = run(crash_call=call)
        for state in ops.crash_states(rng, 4):
            check_state(state, outcome, violations)
            states += 1
    print(f"\ncompressed generations, power loss: crash points {full.calls + 1}, disk states {states}, "
          f"lost {violations.lost}, duplicated {violations.duplicated}, unexpected {violations.unexpected}")
    assert states > 400
    assert violations.total == 0, violations.examples
