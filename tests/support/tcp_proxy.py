"""A TCP proxy that plays a slow or silent network in front of a real server (Redis).

``with TcpProxy("127.0.0.1", 6379) as proxy:`` then connect to ``proxy.port``. Bytes pass
through unchanged unless told otherwise:

* ``proxy.slow_reply_to = b"lock:"``, ``proxy.reply_delay = 0.5``: the reply to a
  command whose bytes contain ``lock:`` is held back that long (the command itself
  reaches the server at once, as when a reply is lost in a slow network).
* ``proxy.reply_delay`` with ``slow_reply_to = b""``: every reply is late.
* ``proxy.silent = True``: connections are accepted and nothing is forwarded either way.

``proxy.commands`` counts the client's sends (chunks), to tell whether anything was asked.
"""
import socket
import threading
import time

from tests.support.processes import Managed


class TcpProxy(Managed):
    def __init__(self, host: str, port: int):
        self.upstream = (host, port)
        self.reply_delay = 0.0
        self.slow_reply_to = b""
        self.silent = False
        self.commands = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._closed = threading.Event()
        self._sockets = []
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def close(self):
        self._closed.set()
        for sock in [self._listener, *self._sockets]:
            try:
                sock.close()
            except OSError:
                pass

    def _accept(self):
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self._sockets.append(client)
            if self.silent:
                continue  # accepted, never answered: the client's socket timeout decides
            server = socket.create_connection(self.upstream)
            self._sockets.append(server)
            slow = threading.Event()  # set: the next reply on this connection is late
            threading.Thread(target=self._requests, args=(client, server, slow), daemon=True).start()
            threading.Thread(target=self._replies, args=(server, client, slow), daemon=True).start()

    def _requests(self, client, server, slow):
        for chunk in _chunks(client):
            with self._lock:
                self.commands += 1
            if self.reply_delay and self.slow_reply_to in chunk:
                slow.set()
            if not _send(server, chunk):
                return

    def _replies(self, server, client, slow):
        for chunk in _chunks(server):
            if slow.is_set():
                slow.clear()
                time.sleep(self.reply_delay)
            if not _send(client, chunk):
                return


def _chunks(sock):
    while True:
        try:
            chunk = sock.recv(65536)
        except OSError:
            return
        if not chunk:
            return
        yield chunk


def _send(sock, chunk) -> bool:
    try:
        sock.sendall(chunk)
        return True
    except OSError:
        return False
