from __future__ import annotations

from collections.abc import Iterator

import pytest
from console_client import Browser, browser

from vigil.config import Settings
from vigil.serve.service import Service
from vigil.web.server import build_app


@pytest.fixture
def console(tmp_path) -> Iterator[Browser]:
    """A real service (no detection workers, own rules off) and its console, signed out."""
    service = Service(
        Settings(data_dir=tmp_path, indicators=False, starter_rules=False, pipeline={"workers": 0})
    )
    made = browser(build_app(service), service)
    with made.client:
        yield made
