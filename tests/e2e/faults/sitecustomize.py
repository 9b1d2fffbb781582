"""Fault injection for whole-server tests, loaded by every Vigil process (the server and its
spawned detection workers) when this folder is on PYTHONPATH: with VIGIL_TEST_FAULT=store,
storing any event whose fields hold `"poison": true` fails, as a bug in the writer would."""

import os

if os.environ.get("VIGIL_TEST_FAULT") == "store":
    from vigil.store import events as _events

    _write = _events.EventStore.write

    def _failing_write(self, events, offsets, *, ingested):  # type: ignore[no-untyped-def]
        if any(e.fields.get("poison") is True for e in events):
            raise RuntimeError("injected fault: this event cannot be stored")
        return _write(self, events, offsets, ingested=ingested)

    _events.EventStore.write = _failing_write
