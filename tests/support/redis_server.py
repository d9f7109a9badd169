"""redis-server, started one way for every Redis of the harness.

``redis_process(port, dir, *args)`` is a ``Process`` running a redis-server on loopback that
keeps nothing on disk (no RDB, no AOF) and logs to ``dir/redis.log``; the cluster and the
sentinel set add their own arguments. ``RedisServer`` is a single private one on a free
port, which a test may stop (SIGKILL, as a crash) and start again on the same port, empty.
"""
import shutil
import tempfile
from pathlib import Path

import redis

from tests.support.processes import Managed, Process, free_port

HOST = "127.0.0.1"


def redis_process(port, directory, *args, name=None) -> Process:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cmd = ["redis-server", "--port", port, "--bind", HOST, "--save", "", "--appendonly", "no",
           "--dir", directory, *args]
    return Process(cmd, directory / "redis.log", name=name or f"redis {port}")


def client(address, **options) -> redis.Redis:
    """A client of the Redis at "host:port" with a short socket timeout (a hang guard)."""
    host, port = address.rsplit(":", 1)
    return redis.Redis(host, int(port), socket_timeout=2, **options)


class RedisServer(Managed):
    def __init__(self):
        self.port = free_port()
        self.url = f"redis://{HOST}:{self.port}/0"
        self.dir = tempfile.mkdtemp(prefix="redis-")
        self.process = redis_process(self.port, self.dir)

    def close(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def start(self):
        self.process.start()
        self.process.wait_until(client(f"{HOST}:{self.port}").ping, 5, "answering PING")
        return self

    def stop(self):
        """SIGKILL; returns once the process is reaped."""
        self.process.kill()
