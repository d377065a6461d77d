"""A raw-socket HTTP server on loopback for tests that need a misbehaving receiver: one
that trickles bytes, streams a huge body, or counts connections. pytest-httpserver answers
too politely for those."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator


def read_request(conn: socket.socket) -> bytes:
    """Read one request's head and its Content-Length body (bounded, with a timeout)."""
    conn.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data and len(data) < 65536:
        chunk = conn.recv(4096)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < min(length, 1 << 20):
        chunk = conn.recv(4096)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


@contextlib.contextmanager
def raw_server(answer: Callable[[socket.socket], None], *, requests_per_connection: int = 1) -> Iterator[str]:
    """Serve on a free loopback port; ``answer(conn)`` writes each response by hand.

    Yields the base URL; ``connections`` on the returned URL's server counts accepts.
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    stop = threading.Event()
    threads: list[threading.Thread] = []
    conns: list[socket.socket] = []

    def handle(conn: socket.socket) -> None:
        with conn:
            for _ in range(requests_per_connection):
                if not read_request(conn) or stop.is_set():
                    return
                try:
                    answer(conn)
                except OSError:
                    return

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            raw_server.accepted += 1  # type: ignore[attr-defined]
            conns.append(conn)
            t = threading.Thread(target=handle, args=(conn,), daemon=True)
            threads.append(t)
            t.start()

    raw_server.accepted = 0  # type: ignore[attr-defined]
    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/hook?token=s3cret"
    finally:
        stop.set()
        for sock in [listener, *conns]:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes a blocked accept() or send()
        listener.close()
        acceptor.join(5)
        for t in threads:
            t.join(5)
