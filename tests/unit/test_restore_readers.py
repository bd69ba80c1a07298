"""The restore's object reads run on one pool per process, which a forked child does not inherit (its copy of the
pool would have no threads, and a read submitted to it would wait forever)."""

from __future__ import annotations

import os

from tiering.engine import restore


def test_restores_share_one_read_pool_and_a_forked_child_starts_its_own() -> None:
    pool = restore._readers()
    assert restore._readers() is pool
    assert pool.submit(lambda: "read").result(timeout=10) == "read"
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a fresh pool that runs what it is given
        try:
            child_pool = restore._readers()
            answer = child_pool.submit(lambda: "child read").result(timeout=10)
            os.write(write, f"{child_pool is not pool} {answer}".encode())
        finally:
            os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    with os.fdopen(read, "rb") as answer:
        assert answer.read().decode() == "True child read"
    assert os.waitstatus_to_exitcode(status) == 0
    assert restore._readers() is pool  # the parent keeps its own
