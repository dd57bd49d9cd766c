"""``benchmarks/multinode.py`` runs end to end: its quick mode on one node of two workers,
with a PostgreSQL cluster of its own (restarted and frozen), exits 0 and prints its table."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


def has_postgres_server() -> bool:
    """Whether the benchmark finds ``initdb`` and ``pg_ctl`` (on PATH, or Debian's), and,
    as root, the ``postgres`` user to run them as."""
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return False
    return all(
        shutil.which(name) or glob.glob(f"/usr/lib/postgresql/*/bin/{name}")
        for name in ("initdb", "pg_ctl")
    )


@pytest.mark.skipif(
    not has_postgres_server(), reason="needs PostgreSQL server binaries (scripts/with-postgres)"
)
def test_quick_run_on_one_node() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "multinode.py"), "--quick", "--nodes", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for heading in (
        "1 node x 2 workers on one PostgreSQL",
        "Phase 1 - mixed load",
        "Phase 2 - revocation fan-out",
        "Phase 3 - database faults",
        "restart -m fast",
        "every backend terminated",
        "terminated, frozen 2 s",
        "Acknowledged writes, looked up in PostgreSQL",
        "OK: ",
    ):
        assert heading in done.stdout, done.stdout
