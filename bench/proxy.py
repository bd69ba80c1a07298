"""A counting TCP proxy on 127.0.0.1 in front of the S3 endpoint: HTTP requests sent and bytes received, as the
network sees them (independent of the client's own bookkeeping), for the restore budget (requests, bytes).

It runs in a process of its own: relaying in the measured process would charge its work (a thread per direction,
each recv and send under the GIL) to the restores it counts."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_REQUEST_LINE_END = b" HTTP/1.1\r\n"
_REPOSITORY = Path(__file__).resolve().parent.parent  # where `-m bench.proxy` imports from


class CountingProxy:
    """The parent's handle: the proxy process answers `reset` and `snapshot` on its stdin/stdout."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "bench.proxy", target_host, str(target_port)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1, cwd=_REPOSITORY,
        )  # fmt: skip
        self.port = int(self._ask(""))

    def _ask(self, command: str) -> str:
        assert self._process.stdin is not None and self._process.stdout is not None
        if command:
            self._process.stdin.write(command + "\n")
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError(f"the counting proxy exited (code {self._process.poll()})")
        return line.strip()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reset(self) -> None:
        self._ask("reset")

    def snapshot(self) -> tuple[int, int]:
        """(requests, bytes received) since the last reset."""
        requests, down = self._ask("snapshot").split()
        return int(requests), int(down)

    def close(self) -> None:
        self._process.kill()
        self._process.wait(10)


class _Counts:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests = self.down = self.up = 0


def _serve(target: tuple[str, int]) -> None:
    """The proxy's process: a thread accepting on a random loopback port (printed first), a thread per direction
    of each connection; the main thread answers the parent's commands. Counts are updated before the bytes are
    passed on, so a client that got them sees them counted."""
    counts = _Counts()
    server = socket.create_server(("127.0.0.1", 0))

    def accept() -> None:
        while True:
            client, _ = server.accept()
            upstream = socket.create_connection(target)
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=_pipe, args=(client, upstream, counts, True), daemon=True).start()
            threading.Thread(target=_pipe, args=(upstream, client, counts, False), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    print(server.getsockname()[1], flush=True)
    for line in sys.stdin:
        with counts.lock:
            if line.strip() == "reset":
                counts.requests = counts.down = counts.up = 0
                answer = "ok"
            else:
                answer = f"{counts.requests} {counts.down}"
        print(answer, flush=True)


def _pipe(src: socket.socket, dst: socket.socket, counts: _Counts, up: bool) -> None:
    try:
        while True:
            data = src.recv(262144)
            if not data:
                break
            with counts.lock:
                if up:
                    counts.up += len(data)
                    counts.requests += data.count(_REQUEST_LINE_END)
                else:
                    counts.down += len(data)
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
    try:
        yield proxy
    finally:
        proxy.close()


if __name__ == "__main__":
    _serve((sys.argv[1], int(sys.argv[2])))
