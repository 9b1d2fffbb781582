"""Fault injection for whole-server tests, loaded by every Vigil process (the server and its
spawned detection workers) when this folder is on PYTHONPATH: with VIGIL_TEST_FAULT=store,
storing any event whose fields hold `"poison": true` fails, as a bug in the writer would."""

import os

if os.environ.get("VIGIL_TEST_FAULT") == "store":
    from vigil.store import events as _events

    _rows = _events.EventStore.rows

    def _failing_rows(self, events, offsets, *, ingested):  # type: ignore[no-untyped-def]
        if any(e.fields.get("poison") is True for e in events):
            raise RuntimeError("injected fault: this event cannot be stored")
        return _rows(self, events, offsets, ingested=ingested)

    _events.EventStore.rows = _failing_rows
