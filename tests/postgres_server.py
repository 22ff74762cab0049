"""A real PostgreSQL for the tests: Debian's server binaries (package postgresql), a fresh cluster
in a temporary folder, on a free loopback port, removed afterwards. PostgreSQL refuses to run as
root, so as root it runs as the `postgres` user the package creates."""

from __future__ import annotations

import contextlib
import glob
import os
import pathlib
import pwd
import shutil
import signal
import subprocess
import tempfile

import psycopg
import pytest

from sai.local.processes import wait_until
from sai.state import free_port


def _bindir() -> pathlib.Path | None:
    """The folder of initdb/postgres: on PATH, else Debian's /usr/lib/postgresql/<version>/bin."""
    if found := shutil.which("initdb"):
        return pathlib.Path(found).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return pathlib.Path(versions[-1]).parent if versions else None


def missing(what: str) -> None:
    """Skip, or fail under CI (whose .ci/run installs it)."""
    message = f"{what} is not installed (apt-get install postgresql nats-server)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@contextlib.contextmanager
def postgres_server(database: str = "shop"):
    """Yields the DSN of `database` on a PostgreSQL started for the caller."""
    bindir = _bindir()
    if bindir is None:
        missing("PostgreSQL")
    folder = pathlib.Path(tempfile.mkdtemp(prefix="sai-pg-"))
    user = None
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(folder, user.pw_uid, user.pw_gid)
    run_as = {"user": user.pw_uid, "group": user.pw_gid} if user else {}
    port = free_port()
    subprocess.run(
        [bindir / "initdb", "-D", folder / "data", "-U", "sai", "-A", "trust", "-E", "UTF8", "--no-sync"],
        check=True,
        capture_output=True,
        **run_as,
    )
    log = open(folder / "postgres.log", "wb")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [bindir / "postgres", "-D", folder / "data", "-p", str(port), "-k", folder, "-c", "listen_addresses=127.0.0.1"]
        + ["-c", "fsync=off"],
        stdout=log,
        stderr=subprocess.STDOUT,
        **run_as,
    )
    admin = f"postgresql://sai@127.0.0.1:{port}/postgres"

    def accepting() -> bool:
        try:
            with psycopg.connect(admin, connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    try:
        if not wait_until(accepting, 30, 0.1, lambda: server.poll() is not None and "postgres exited"):
            raise RuntimeError(f"PostgreSQL did not start; see {folder / 'postgres.log'}")
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {database}")
        yield f"postgresql://sai@127.0.0.1:{port}/{database}"
    finally:
        server.send_signal(signal.SIGINT)  # fast shutdown: clients are disconnected
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
        shutil.rmtree(folder, ignore_errors=True)
