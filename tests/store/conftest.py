"""The store's tests run against both engines: `target` is a fresh SQLite folder or PostgreSQL database."""

import pytest
from pgcluster import pg_cluster  # noqa: F401  (the session's cluster, started when a test needs it)


@pytest.fixture(params=["sqlite", "postgres"])
def target(request, tmp_path):
    """What HubStore opens: a folder (hub.db in it) or the URL of an empty schema in the private cluster."""
    if request.param == "sqlite":
        return tmp_path
    return request.getfixturevalue("pg_cluster").schema()
