"""One place that turns a storage URI (local path or s3://) into a pyarrow filesystem."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow.fs as pafs


def is_remote(uri: str) -> bool:
    return "://" in str(uri) and not str(uri).startswith("file://")


def s3_options() -> dict:
    """s3fs options from the standard AWS variables; credentials are passed, never logged."""
    opts: dict = {}
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        opts["endpoint_url"] = endpoint
    return opts


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path inside it) for a local path, file:// or s3:// URI."""
    uri = str(uri)
    if uri.startswith("s3://"):
        import s3fs

        fs = pafs.PyFileSystem(pafs.FSSpecHandler(s3fs.S3FileSystem(**s3_options())))
        return fs, uri.removeprefix("s3://")
    if uri.startswith("file://"):
        uri = uri.removeprefix("file://")
    return pafs.LocalFileSystem(), str(Path(uri).expanduser().resolve())


def join(uri: str, *parts: str) -> str:
    """Join path parts onto a URI without mangling the scheme."""
    return "/".join([str(uri).rstrip("/"), *parts])


def read_json(uri: str) -> dict | None:
    """Read a JSON file, or None if it does not exist."""
    fs, path = filesystem(uri)
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        return None
    with fs.open_input_stream(path) as f:
        return json.loads(f.read().decode())


def write_bytes_atomic(uri: str, data: bytes) -> None:
    """Write a file so readers see the old file or the whole new one, never half of it."""
    fs, path = filesystem(uri)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with fs.open_output_stream(tmp) as f:
        f.write(data)
    fs.move(tmp, path)


def write_json(uri: str, obj: dict) -> None:
    write_bytes_atomic(uri, json.dumps(obj, indent=2, sort_keys=True).encode())
