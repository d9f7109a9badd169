"""Clients a service must survive: they connect and then stall, or never read.

Each opens a raw socket to 127.0.0.1:``port`` and returns it open; the caller closes it.
``healthz(base)`` is the probe that tells whether the service still answers meanwhile.
"""
import json
import socket
import time

import requests


def request_line_only(port, path):
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(f"POST {path} HTTP/1.1\r\n".encode())
    return sock


def body_stalled(port, path):
    """Headers announcing a 100-byte body, then 10 bytes of it and nothing more."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 "Content-Length: 100\r\n\r\n{\"limit\": ".encode())
    return sock


def never_reading(port, path, body):
    """Sends a whole request for ``body``'s answer, then never reads: a tiny receive
    buffer, so the sender's side fills after a few MB."""
    payload = json.dumps(body).encode()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(5)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
    return sock


def healthz(base, timeout=3.0):
    """Seconds /healthz took, or None when it did not answer within ``timeout``."""
    t0 = time.monotonic()
    try:
        ok = requests.get(f"{base}/healthz", timeout=timeout).status_code == 200
    except requests.RequestException:
        return None
    return time.monotonic() - t0 if ok else None


def closed_by_peer(sock) -> bool:
    sock.settimeout(0.2)
    try:
        return sock.recv(4096) is not None   # b"" (closed) or nginx's 408 answer
    except TimeoutError:
        return False
    except OSError:
        return True
