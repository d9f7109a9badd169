"""A Redis Cluster on loopback: 3 masters and 3 replicas, each a redis-server of ours.

``with RedisCluster() as cluster:`` starts six ``redis-server --cluster-enabled yes`` nodes
(ports below 55535: each also binds its bus port, port + 10000), joins them with
``redis-cli --cluster create ... --cluster-replicas 1``, and waits until every node reports
``cluster_state:ok`` and every replica's link to its master is up.

``cluster.nodes`` are "127.0.0.1:port" strings (``cluster.env_value`` is REDIS_CLUSTER);
``masters()``, ``master_for_key(key)``, ``kill(node)`` (SIGKILL), ``wait_for_failover(old)``
(seconds until a replica of ``old`` is a master and the cluster is ok again) and
``restart(node)`` (it comes back as a replica of whoever took over) drive failovers.
The node timeout is small (NODE_TIMEOUT_MS) so a failover takes seconds, not the default 15+.
"""
import random
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from tests.support.processes import Managed, Process, wait_for
from tests.support.redis_server import client, redis_process

NODE_TIMEOUT_MS = 1000
HOST = "127.0.0.1"


def free_port_with_bus(low=20000, high=55000) -> int:
    """A port free on loopback whose bus port (port + 10000) is free too."""
    for _ in range(200):
        port = random.randrange(low, high)
        try:
            for p in (port, port + 10000):
                with socket.socket() as s:
                    s.bind((HOST, p))
        except OSError:
            continue
        return port
    raise RuntimeError(f"no free port pair in {low}..{high}")


class RedisCluster(Managed):
    def __init__(self, masters=3, replicas_per_master=1, node_timeout_ms=NODE_TIMEOUT_MS):
        self.dir = Path(tempfile.mkdtemp(prefix="redis-cluster-"))
        self.replicas_per_master = replicas_per_master
        self.node_timeout_ms = node_timeout_ms
        ports = []
        while len(ports) < masters * (1 + replicas_per_master):
            port = free_port_with_bus()
            if not {port, port + 10000} & {q + d for q in ports for d in (0, 10000)}:
                ports.append(port)
        self.nodes = [f"{HOST}:{p}" for p in ports]
        self.processes = {node: self._process(node) for node in self.nodes}
        self.start_seconds = 0.0
        self._replicas_before_kill: dict[str, set] = {}
        self._killed_at: dict[str, float] = {}

    @property
    def env_value(self) -> str:
        return ",".join(self.nodes)

    def _process(self, node) -> Process:
        port = node.rsplit(":", 1)[1]
        return redis_process(
            port, self.dir / port, "--cluster-enabled", "yes", "--cluster-config-file",
            "nodes.conf", "--cluster-node-timeout", str(self.node_timeout_ms),
            # A replica may take over however long it was cut off: a test kills at will.
            "--cluster-replica-validity-factor", "0",
            # Replicas sync at once, not after the default 5 s wait for more replicas.
            "--repl-diskless-sync-delay", "0", name=f"redis cluster node {node}")

    def client(self, node) -> redis.Redis:
        return client(node, decode_responses=True)

    def start(self):
        t0 = time.monotonic()
        for process in self.processes.values():
            process.start()
        for node, process in self.processes.items():
            process.wait_until(self.client(node).ping, 20, "answering PING")
        create = subprocess.run(
            ["redis-cli", "--cluster", "create", *self.nodes, "--cluster-replicas",
             str(self.replicas_per_master), "--cluster-yes"], capture_output=True, text=True,
            timeout=60)
        if create.returncode:
            raise RuntimeError(f"redis-cli --cluster create failed:\n{create.stdout[-3000:]}"
                               f"{create.stderr[-2000:]}")
        self._wait(self._all_ok, 30, "cluster_state:ok on every node, replicas linked")
        self.start_seconds = time.monotonic() - t0
        return self

    def close(self):
        for process in self.processes.values():
            process.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- state --------------------------------------------------------------------------

    def live_nodes(self) -> list[str]:
        return [n for n, p in self.processes.items() if p.running]

    def _cluster_nodes(self) -> list[dict]:
        """CLUSTER NODES as a live node sees it: id, addr, flags, master_id, slots."""
        for node in self.live_nodes():
            try:  # split arguments: redis-py then returns the raw text, not its own parse
                text = self.client(node).execute_command("CLUSTER", "NODES")
            except redis.RedisError:
                continue
            return [{"id": f[0], "addr": f[1].split("@")[0], "flags": f[2], "master_id": f[3],
                     "slots": f[8:]} for f in map(str.split, text.splitlines())]
        raise RuntimeError("no live cluster node answers")

    def masters(self) -> list[str]:
        return [r["addr"] for r in self._cluster_nodes()
                if "master" in r["flags"] and "fail" not in r["flags"] and r["slots"]]

    def replicas_of(self, master) -> list[str]:
        rows = self._cluster_nodes()
        master_id = next(r["id"] for r in rows if r["addr"] == master)
        return [r["addr"] for r in rows if r["master_id"] == master_id]

    def master_for_key(self, key) -> str:
        client = self.client(self.live_nodes()[0])
        slot = client.execute_command("CLUSTER", "KEYSLOT", key)
        for start, end, (host, port, *_), *_ in client.execute_command("CLUSTER", "SLOTS"):
            if start <= slot <= end:
                return f"{host}:{port}"
        raise RuntimeError(f"no master serves slot {slot}")

    def _all_ok(self) -> bool:
        for node in self.live_nodes():
            client = self.client(node)
            if "cluster_state:ok" not in client.execute_command("CLUSTER", "INFO"):
                return False
            role = client.info("replication")
            if role["role"] == "slave" and role.get("master_link_status") != "up":
                return False
        return True

    def _wait(self, check, timeout, what) -> float:
        return wait_for(check, timeout, f"redis cluster {what}", self.processes.values(),
                        (redis.RedisError, RuntimeError, StopIteration))

    # -- faults -------------------------------------------------------------------------

    def kill(self, node):
        """SIGKILL one node, as a crash would (no shutdown, no failover handshake)."""
        self._replicas_before_kill[node] = set(self.replicas_of(node))
        self.processes[node].kill()
        self._killed_at[node] = time.monotonic()

    def wait_for_failover(self, old_master, timeout=30.0) -> float:
        """Seconds from kill(old_master) until a former replica serves its slots, all ok."""
        replicas = self._replicas_before_kill[old_master]

        def promoted():
            return bool(replicas & set(self.masters())) and old_master not in self.masters() \
                and self._all_ok()
        self._wait(promoted, timeout, f"failed over from {old_master}")
        return time.monotonic() - self._killed_at[old_master]

    def restart(self, node, timeout=30.0) -> float:
        """Start a killed node again (same nodes.conf); seconds until the cluster is all ok."""
        self.processes[node].start()
        self.processes[node].wait_until(self.client(node).ping, 20, "answering PING")
        return self._wait(self._all_ok, timeout, f"ok again with {node} back")
