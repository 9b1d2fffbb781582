"""The shipped logsource mapping agrees with SigmaHQ's own tests/thor.yml."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from vigil.detect.sigma.logsource import LogsourceMap
from vigil.events import Event

THOR = (
    Path(__file__).resolve().parents[3].parent / "shared" / "data" / "sigma" / "tests" / "thor.yml"
)


@pytest.fixture(scope="module")
def thor() -> dict:
    if not THOR.exists():
        pytest.skip(f"reference data not found at {THOR}")
    return yaml.safe_load(THOR.read_text())["logsources"]


def test_every_thor_windows_service_maps_to_the_same_channels(thor: dict) -> None:
    mapping = LogsourceMap.default().products["windows"]
    for entry in thor.values():
        if entry.get("product") != "windows" or "sources" not in entry:
            continue
        channels = {s.split(":", 1)[1].lower() for s in entry["sources"]}
        assert mapping.services[entry["service"]] == channels, entry["service"]


def test_every_thor_category_classifies_its_events_with_thor_field_renames(thor: dict) -> None:
    logsources = LogsourceMap.default()
    services = {
        e["service"]: e["sources"] for e in thor.values() if "sources" in e and "service" in e
    }
    checked = 0
    for entry in thor.values():
        if "conditions" not in entry:
            continue
        service = entry["rewrite"]["service"]
        channel = services[service][0].split(":", 1)[1]
        conditions = entry["conditions"]
        event_ids = conditions["EventID"]
        for event_id in event_ids if isinstance(event_ids, list) else [event_ids]:
            fields = {"Channel": channel, "EventID": event_id}
            fields.update({k: v for k, v in conditions.items() if k != "EventID"})
            event_class = logsources.classify(Event(fields, "thor", product="windows"))
            fieldmap = event_class.fieldmap_for(entry["category"])
            assert fieldmap is not None, (entry["category"], fields)
            assert dict(fieldmap) == (entry.get("fieldmappings") or {}), entry["category"]
            assert service in event_class.services
            checked += 1
    assert checked > 50


def test_security_4688_is_process_creation_with_new_process_name_as_image() -> None:
    event = Event({"Channel": "Security", "EventID": 4688}, "t", product="windows")
    event_class = LogsourceMap.default().classify(event)
    assert dict(event_class.fieldmap_for("process_creation") or ()) == {
        "Image": "NewProcessName",
        "ParentImage": "ParentProcessName",
    }


def test_an_event_of_another_channel_is_not_process_creation() -> None:
    event = Event({"Channel": "System", "EventID": 1}, "t", product="windows")
    assert LogsourceMap.default().classify(event).fieldmap_for("process_creation") is None
