"""Model tests build tiny models into a temporary GENARUN_HOME, never the user's cache."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

try:
    from tests.providers_server import FakeOpenAIServer
except ImportError:
    from providers_server import FakeOpenAIServer  # type: ignore[no-redef]


@pytest.fixture(autouse=True, scope="session")
def genarun_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = str(tmp_path_factory.mktemp("genarun_home"))
    saved = {k: os.environ.get(k) for k in ("GENARUN_HOME", "HF_HUB_OFFLINE")}
    os.environ["GENARUN_HOME"] = home
    os.environ["HF_HUB_OFFLINE"] = "1"  # no model hub can be reached: never try
    yield home
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    """A fake OpenAI-compatible server on 127.0.0.1 for the openai provider's tests."""
    with FakeOpenAIServer() as running:
        yield running
