"""Multinode tests: their own redis-server processes and Clusters (tests/support/redis_servers.py)."""

from tests.support.redis_servers import redis_cluster, redis_server  # noqa: F401 - fixtures
