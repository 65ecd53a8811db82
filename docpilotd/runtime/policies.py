"""Each session's backup policy: chosen at `start --policy`, changed with `docpilot policy`, else
given by its tags or the default (config.Config.policy_for).

The choice is one of the session's metadata settings (`config.POLICY_SETTING`), so it travels
with the session in DocPilot's own format (snapshot, backups, export); changing it is a journaled
`Configure` change like any other, so it is as durable as a command. A name the config no longer
has falls back to the tags and the default, and `docpilot policy` says which applies.
"""

from __future__ import annotations

from .. import results
from ..config import DEFAULT_POLICY, POLICY_SETTING, Config
from ..domain import changes
from ..domain.model import Session
from ..domain.retention import RetentionPolicy
from ..errors import UsageError


def names(config: Config) -> list[str]:
    """The policies a session may choose: the default first, then the config's tables in order."""
    return [DEFAULT_POLICY, *config.policies]


def check_name(config: Config, name: str) -> str:
    """`name` when the config has that policy; UsageError naming those it has otherwise."""
    if name not in names(config):
        raise UsageError(f"no backup policy {name!r} in the config; it has: {', '.join(names(config))} "
                         "(add a [policies.NAME] table and send docpilotd SIGHUP)")
    return name


def of(config: Config, session: Session) -> tuple[str, RetentionPolicy, bool]:
    """The policy that applies to `session`: its name, the policy, and whether it was chosen."""
    chosen = session.metadata.settings.get(POLICY_SETTING)
    name, policy = config.policy_for(session.metadata.tags, chosen)
    return name, policy, chosen is not None and chosen == name


def change(config: Config, wanted: str | None, clear: bool, at: str, event_id: str) -> changes.Configure | None:
    """The change a `policy` request asks for (None: it only asks to see)."""
    if clear:
        return changes.Configure(at=at, event_id=event_id, key=POLICY_SETTING, value=None)
    if wanted is None:
        return None
    return changes.Configure(at=at, event_id=event_id, key=POLICY_SETTING, value=check_name(config, wanted))


def shown(config: Config, session: Session) -> results.PolicyShown:
    name, policy, chosen = of(config, session)
    return {
        "session": session.id, "policy": name, "chosen": chosen, "available": names(config),
        "rules": {
            "keep_last": policy.keep_last, "keep_hourly": policy.keep_hourly, "keep_daily": policy.keep_daily,
            "keep_weekly": policy.keep_weekly, "keep_monthly": policy.keep_monthly,
            "schedule_seconds": policy.schedule_seconds,
        },
    }
