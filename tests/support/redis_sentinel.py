"""Redis with Sentinel on loopback: one master, one replica, three sentinels.

``with RedisSentinelSet() as s:`` starts a master, a replica (``--replicaof``) and three
``redis-server --sentinel`` processes (the same binary as Debian's redis-sentinel) monitoring
``MASTER_NAME`` with quorum 2, ``down-after-milliseconds`` DOWN_AFTER_MS and a short
failover timeout. It returns once every sentinel sees the master, the replica and the two
other sentinels (without those, a kill could not be voted on).

``s.sentinels`` is "127.0.0.1:p,127.0.0.1:p,127.0.0.1:p" (REDIS_SENTINELS);
``master_address()`` is what the sentinels currently name; ``kill_master()`` SIGKILLs it and
``wait_for_failover()`` returns the seconds from the kill until all three sentinels name the
promoted replica and it answers as a master. ``restart(node)`` brings a killed server back
(sentinels turn an old master into a replica of the new one).
"""
import shutil
import tempfile
import time
from pathlib import Path

import redis

from tests.support.processes import Managed, Process, free_port, wait_for
from tests.support.redis_server import client, redis_process

MASTER_NAME = "mymaster"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 3000
HOST = "127.0.0.1"
SENTINEL_CONF = """port {port}
bind 127.0.0.1
dir {dir}
sentinel monitor {name} 127.0.0.1 {master_port} 2
sentinel down-after-milliseconds {name} {down_after}
sentinel failover-timeout {name} {failover_timeout}
sentinel parallel-syncs {name} 1
"""


def _client(address) -> redis.Redis:
    return client(address, decode_responses=True)


class RedisSentinelSet(Managed):
    def __init__(self, name=MASTER_NAME, down_after_ms=DOWN_AFTER_MS,
                 failover_timeout_ms=FAILOVER_TIMEOUT_MS):
        self.name = name
        self.dir = Path(tempfile.mkdtemp(prefix="redis-sentinel-"))
        ports = set()
        while len(ports) < 5:   # free_port() twice may give the same port
            ports.add(free_port())
        master, replica, *sentinel_ports = ports
        self.servers = {f"{HOST}:{master}": self._server(master),
                        f"{HOST}:{replica}": self._server(replica, "--replicaof", HOST, master)}
        self.sentinel_processes = {}
        for port in sentinel_ports:
            conf = self.dir / f"sentinel-{port}.conf"   # sentinel rewrites it: ours alone
            conf.write_text(SENTINEL_CONF.format(
                port=port, dir=self.dir, name=name, master_port=master,
                down_after=down_after_ms, failover_timeout=failover_timeout_ms))
            self.sentinel_processes[f"{HOST}:{port}"] = Process(
                ["redis-server", conf, "--sentinel"], self.dir / f"sentinel-{port}.log",
                name=f"redis sentinel {port}")
        self.initial_master = f"{HOST}:{master}"
        self.start_seconds = 0.0
        self._killed_at = None

    def _server(self, port, *args) -> Process:
        return redis_process(port, self.dir / str(port), "--repl-diskless-sync-delay", "0", *args)

    @property
    def sentinels(self) -> str:
        return ",".join(self.sentinel_processes)

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        return [(a.rsplit(":", 1)[0], int(a.rsplit(":", 1)[1])) for a in self.sentinel_processes]

    def start(self):
        t0 = time.monotonic()
        for process in [*self.servers.values(), *self.sentinel_processes.values()]:
            process.start()
        for address, process in {**self.servers, **self.sentinel_processes}.items():
            process.wait_until(_client(address).ping, 20, "answering PING")
        self._wait(self._settled, 30, "watching master, replica and 2 other sentinels")
        self.start_seconds = time.monotonic() - t0
        return self

    def close(self):
        for process in [*self.sentinel_processes.values(), *self.servers.values()]:
            process.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _settled(self) -> bool:
        for address in self.sentinel_processes:
            state = _client(address).execute_command("SENTINEL", "MASTER", self.name)
            if isinstance(state, list):  # flat on the wire; redis-py 8 pairs it already
                state = dict(zip(state[::2], state[1::2]))
            if state["flags"] != "master" or str(state["num-slaves"]) != "1" \
                    or str(state["num-other-sentinels"]) != "2":
                return False
        replica = next(a for a in self.servers if a != self.master_address())
        return _client(replica).info("replication").get("master_link_status") == "up"

    def _wait(self, check, timeout, what) -> float:
        return wait_for(check, timeout, f"redis sentinel set {what}",
                        [*self.servers.values(), *self.sentinel_processes.values()],
                        (redis.RedisError, StopIteration, KeyError))

    def master_address(self, sentinel=None) -> str:
        """The master as one sentinel (default: the first live one) names it."""
        sentinel = sentinel or next(a for a, p in self.sentinel_processes.items() if p.running)
        host, port = _client(sentinel).execute_command(
            "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.name)
        return f"{host}:{port}"

    def kill_master(self) -> str:
        """SIGKILL the current master; returns its address."""
        master = self.master_address()
        self.servers[master].kill()
        self._killed_at, self._killed = time.monotonic(), master
        return master

    def wait_for_failover(self, timeout=60.0) -> float:
        """Seconds from kill_master() until every sentinel names a live, promoted master."""
        def promoted():
            named = {self.master_address(s) for s in self.sentinel_processes}
            if len(named) != 1 or self._killed in named:
                return False
            return _client(named.pop()).info("replication")["role"] == "master"
        self._wait(promoted, timeout, f"failed over from {self._killed}")
        return time.monotonic() - self._killed_at

    def restart(self, address, timeout=30.0) -> float:
        """Start a killed server again; seconds until the sentinels have it as a replica."""
        self.servers[address].start()
        self.servers[address].wait_until(_client(address).ping, 20, "answering PING")

        def rejoined():
            info = _client(address).info("replication")
            return info["role"] == "slave" and info.get("master_link_status") == "up" \
                and f"{info['master_host']}:{info['master_port']}" == self.master_address()
        return self._wait(rejoined, timeout, f"{address} back as a replica")
