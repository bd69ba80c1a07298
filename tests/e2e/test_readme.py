"""The README runs: every shell block of its "Quick start" and "Retention, ..." sections, verbatim and in order,
in one bash (as a reader pastes them), against the embedded defaults in a temporary TIERING_HOME. A command that
fails, or a purge/erase example that finds nothing to do, fails the test with the command named."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = REPO / ".venv" / "bin"
SECTIONS = ("Quick start", "Retention, right to erasure, statistics, audit")


def shell_blocks(markdown: str, section: str) -> list[str]:
    """The ```bash blocks under `## <section>`, up to the next `## ` heading."""
    m = re.search(rf"^## {re.escape(section)}\n(.*?)(?=^## |\Z)", markdown, re.S | re.M)
    assert m, f"README has no section '## {section}'"
    blocks = re.findall(r"^```(?:bash|sh)\n(.*?)^```", m.group(1), re.S | re.M)
    assert blocks, f"README section '{section}' has no shell block"
    return list(blocks)


def test_shell_blocks_are_found() -> None:
    text = (REPO / "README.md").read_text()
    quick = shell_blocks(text, SECTIONS[0])
    assert any("archive run" in b for b in quick)
    assert any("archive purge" in b for b in shell_blocks(text, SECTIONS[1]))
    with pytest.raises(AssertionError):
        shell_blocks(text, "No such section")


@pytest.mark.slow
def test_readme_quick_start_and_retention_run() -> None:
    if shutil.which("jq") is None:
        pytest.fail("jq is needed by the README's retention examples (apt-get install jq)")
    text = (REPO / "README.md").read_text()
    blocks = [b for section in SECTIONS for b in shell_blocks(text, section)]
    script = "\n".join(
        [
            "set -euo pipefail",
            "trap 'echo \"README command failed (exit $?): $BASH_COMMAND\" >&2' ERR",
            *blocks,
        ]
    )
    # not pytest's tmp_path: as root the embedded server runs as another user, who cannot enter pytest's 0700 folder
    home = Path(tempfile.mkdtemp(prefix="tiering-readme-")) / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TIERING_", "AWS_")) and k != "DATABASE_URL"}
    env.update(TIERING_HOME=str(home), PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}", NO_COLOR="1")
    tiering = [str(VENV_BIN / "tiering"), "--embedded"]
    try:
        done = subprocess.run(
            ["bash", "-c", script], cwd=REPO, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=900,
        )  # fmt: skip
        assert done.returncode == 0, f"{done.stderr[-4000:]}\n--- stdout ---\n{done.stdout[-2000:]}"
        audit = subprocess.run(
            [*tiering, "audit", "--format", "json", "--limit", "1000"], env=env, capture_output=True, text=True,
            timeout=120,
        )  # fmt: skip
        assert audit.returncode == 0, audit.stderr
        ops = json.loads(audit.stdout)
        if isinstance(ops, dict):  # an envelope or a page
            ops = ops.get("data", ops.get("items", ops))
        purges = [o for o in ops if o["operation"] == "purge" and not o["parameters"].get("dry_run")]
        by_queue = [o["counts"].get("jobs_purged", 0) for o in purges if o["parameters"].get("queue") == "email_queue"]
        by_status = [o["counts"].get("jobs_purged", 0) for o in purges if o["parameters"].get("status") == "Failed"]
        assert by_queue and by_queue[0] > 0, f"the purge example by queue purged nothing: {purges}"
        assert by_status and by_status[0] > 0, f"the purge example by status purged nothing: {purges}"
        erases = [o for o in ops if o["operation"] == "erase" and not o["counts"].get("dry_run")]
        assert [o["counts"].get("jobs_erased") for o in erases] == [1], "the erase example erased nothing"
        archives = [o for o in ops if o["operation"] == "archive" and o["outcome"] == "succeeded"]
        assert any(o["counts"].get("jobs_archived", 0) > 0 for o in archives)
    finally:
        subprocess.run([*tiering, "db", "stop"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(home.parent, ignore_errors=True)
