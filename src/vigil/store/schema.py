"""Every table of the state database, gathered for migrations (each package defines its own
tables next to the code that uses them)."""

from __future__ import annotations

from sqlalchemy import MetaData


def all_metadata() -> MetaData:
    from vigil.api.auth import metadata as auth
    from vigil.correlate.store import metadata as incidents
    from vigil.intel.store import metadata as intel
    from vigil.store.alerts import metadata as alerts
    from vigil.store.hunts import metadata as hunts

    combined = MetaData()
    for part in (intel, alerts, hunts, auth, incidents):
        for table in part.tables.values():
            table.to_metadata(combined)
    return combined
