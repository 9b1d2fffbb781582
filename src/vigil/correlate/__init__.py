"""Alerts into incidents by shared entities within time windows, entity risk with decay,
and third-party alerts (Wazuh, Suricata, CSV/JSON with a mapping).

    correlator = Correlator()
    correlator.feed(alerts)              # AlertIn, from `from_alert` or `read_alerts`
    for incident in correlator.ranked():
        print(incident.summary())
"""

from vigil.correlate.engine import Correlator, Settings, progresses
from vigil.correlate.model import (
    AlertIn,
    Incident,
    Membership,
    from_alert,
    to_alert,
    to_detection,
)
from vigil.correlate.risk import EntityRisk
from vigil.correlate.stage import IncidentStage
from vigil.correlate.store import STATUSES, IncidentStore
from vigil.correlate.thirdparty import (
    AIT_MAPPING,
    Mapping,
    mapping_from_pairs,
    parse_alerts,
    read_alerts,
)
from vigil.events.records import RiskChange

__all__ = [
    "AIT_MAPPING",
    "STATUSES",
    "AlertIn",
    "Correlator",
    "EntityRisk",
    "Incident",
    "IncidentStage",
    "IncidentStore",
    "Mapping",
    "Membership",
    "RiskChange",
    "Settings",
    "from_alert",
    "mapping_from_pairs",
    "parse_alerts",
    "progresses",
    "read_alerts",
    "to_alert",
    "to_detection",
]
