"""A counting TCP proxy on 127.0.0.1 in front of the S3 endpoint: HTTP requests sent and bytes received, as the
network sees them (independent of the client's own bookkeeping), for the restore budget (requests, bytes)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_REQUEST_LINE_END = b" HTTP/1.1\r\n"


class CountingProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.lock = threading.Lock()
        self.requests = 0
        self.bytes_down = 0
        self.bytes_up = 0
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="bench-proxy", daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reset(self) -> None:
        with self.lock:
            self.requests = self.bytes_down = self.bytes_up = 0

    def snapshot(self) -> tuple[int, int]:
        with self.lock:
            return self.requests, self.bytes_down

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._server.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, up: bool) -> None:
        try:
            while True:
                data = src.recv(262144)
                if not data:
                    break
                with self.lock:
                    if up:
                        self.bytes_up += len(data)
                        self.requests += data.count(_REQUEST_LINE_END)
                    else:
                        self.bytes_down += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()


@contextmanager
def counting_proxy(endpoint: str) -> Iterator[CountingProxy]:
    """Proxy `http://host:port` on a random loopback port."""
    host, _, port = endpoint.split("://", 1)[1].rstrip("/").partition(":")
    proxy = CountingProxy(host, int(port or 80))
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.close()
