"""One place that turns a storage URI (local path, file:// or s3://) into a filesystem.

S3 goes through s3fs (wrapped as a pyarrow filesystem where pyarrow or Ray want one). The
endpoint, region and profile come from `DataConfig.s3` or the standard AWS variables
(`AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_PROFILE`); credentials come
from the AWS variables or profile only. Credentials are captured into the filesystem object
(so Ray workers started before they were set still get them) and are never logged.
"""

from __future__ import annotations

import glob as _glob
import gzip
import io
import json
import os
from pathlib import Path
from typing import BinaryIO

import pyarrow.fs as pafs

_GLOB_CHARS = set("*?[")


def is_remote(uri: str) -> bool:
    return "://" in str(uri) and not str(uri).startswith("file://")


class S3Options(dict):
    """Resolved s3fs keyword arguments (endpoint, region, credentials): safe to ship to Ray tasks."""

    def __repr__(self) -> str:  # never show credentials
        return f"S3Options(endpoint_url={self.get('endpoint_url')!r})"


def s3_options(s3=None) -> S3Options:
    """s3fs keyword arguments from `s3` (S3Config, dict or S3Options) and the AWS environment variables.

    Resolve once in the driver and pass the result to tasks: Ray workers may have been
    started before the variables were set.
    """
    if isinstance(s3, S3Options):
        return s3
    cfg = s3.model_dump() if hasattr(s3, "model_dump") else dict(s3 or {})
    env = os.environ
    opts = S3Options(use_listings_cache=False)  # other processes write here: never trust a cached listing
    endpoint = cfg.get("endpoint_url") or env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    if endpoint:
        opts["endpoint_url"] = endpoint
    region = cfg.get("region") or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if region:
        opts["client_kwargs"] = {"region_name": region}
    if cfg.get("profile"):
        opts["profile"] = cfg["profile"]
    elif env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        opts["key"], opts["secret"] = env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]
        if env.get("AWS_SESSION_TOKEN"):
            opts["token"] = env["AWS_SESSION_TOKEN"]
    return opts


AWS_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_PROFILE",
)


class AWSEnvironment(dict):
    """The driver's AWS variables, for a Ray actor that resolves storage itself (a Tune trial):
    its process may predate them, or run on a node without them. Shown without values."""

    def __repr__(self) -> str:
        return f"AWSEnvironment({sorted(self)})"

    @classmethod
    def capture(cls) -> AWSEnvironment:
        return cls({k: os.environ[k] for k in AWS_VARIABLES if k in os.environ})

    def apply(self) -> None:
        """Set these variables in this process (a reused Ray worker may hold an older value)."""
        os.environ.update(self)


def fsspec_s3(s3=None, whole_files: bool = False):
    """An s3fs filesystem. `whole_files` fetches a file in one GET on its first read (for shards)."""
    import s3fs

    extra = {"default_cache_type": "all"} if whole_files else {}
    return s3fs.S3FileSystem(skip_instance_cache=True, **s3_options(s3), **extra)


def filesystem(uri: str, s3=None, whole_files: bool = False) -> tuple[pafs.FileSystem, str]:
    """(pyarrow filesystem, path inside it) for a local path, file:// or s3:// URI.

    `whole_files=True` suits files read entirely and at random offsets, such as parquet
    shards: each is fetched in one request instead of one per column chunk and footer.
    """
    uri = str(uri)
    if uri.startswith("s3://"):
        return pafs.PyFileSystem(pafs.FSSpecHandler(fsspec_s3(s3, whole_files))), uri.removeprefix("s3://")
    if uri.startswith("file://"):
        uri = uri.removeprefix("file://")
    return pafs.LocalFileSystem(), str(Path(uri).expanduser().resolve())


def ray_storage(uri: str, s3=None) -> tuple[str, pafs.FileSystem | None]:
    """(storage_path, storage_filesystem) for Ray Train/Tune `RunConfig`.

    Local storage is an absolute path and needs no filesystem; S3 storage is passed as a
    bucket path plus a filesystem, which is how Ray honours a custom endpoint.
    """
    if not is_remote(uri):
        return filesystem(uri)[1], None
    fs, path = filesystem(uri, s3)
    return path, fs


def join(uri: str, *parts: str) -> str:
    """Join path parts onto a URI without mangling the scheme."""
    return "/".join([str(uri).rstrip("/"), *parts])


def exists(uri: str, s3=None) -> bool:
    fs, path = filesystem(uri, s3)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def glob(pattern: str, s3=None) -> list[str]:
    """Sorted URIs matching a glob pattern (local or s3://)."""
    if pattern.startswith("s3://"):
        return sorted(f"s3://{p}" for p in fsspec_s3(s3).glob(pattern.removeprefix("s3://")))
    return sorted(p for p in _glob.glob(os.path.expanduser(pattern.removeprefix("file://"))) if os.path.isfile(p))


def has_glob(uri: str) -> bool:
    return bool(_GLOB_CHARS & set(uri))


def list_files(uri: str, s3=None) -> list[tuple[str, int]]:
    """(relative path, size) of every file under a directory URI, sorted by path."""
    fs, root = filesystem(uri, s3)
    if fs.get_file_info(root).type == pafs.FileType.NotFound:
        return []
    infos = fs.get_file_info(pafs.FileSelector(root, recursive=True))
    return sorted((i.path[len(root) :].lstrip("/"), i.size) for i in infos if i.type == pafs.FileType.File)


def delete_dir(uri: str, s3=None) -> None:
    fs, path = filesystem(uri, s3)
    if fs.get_file_info(path).type != pafs.FileType.NotFound:
        fs.delete_dir(path)


def read_bytes(uri: str, s3=None) -> bytes:
    fs, path = filesystem(uri, s3)
    with fs.open_input_stream(path, compression=None) as f:
        return f.read()


def read_json(uri: str, s3=None) -> dict | None:
    """Read a JSON file, or None if it does not exist."""
    if not exists(uri, s3):
        return None
    return json.loads(read_bytes(uri, s3).decode())


def write_bytes_atomic(uri: str, data: bytes, s3=None) -> None:
    """Write a file so readers see the old file or the whole new one, never half of it."""
    fs, path = filesystem(uri, s3)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with fs.open_output_stream(tmp, compression=None) as f:
        f.write(data)
    fs.move(tmp, path)


def write_table(df, uri: str, stem: str, s3=None) -> None:
    """<stem>.csv and <stem>.parquet (a pandas DataFrame) under `uri`, each written atomically."""
    write_bytes_atomic(join(uri, f"{stem}.csv"), df.to_csv(index=False).encode(), s3)
    # Parquet wants one type per column: a field that is "auto" in one row and a bool in another becomes text.
    mixed = [c for c in df if df[c].dtype == object and df[c].dropna().map(type).nunique() > 1]
    buf = io.BytesIO()
    df.astype(dict.fromkeys(mixed, str)).to_parquet(buf, index=False)
    write_bytes_atomic(join(uri, f"{stem}.parquet"), buf.getvalue(), s3)


def write_json(uri: str, obj: dict, s3=None) -> None:
    write_bytes_atomic(uri, json.dumps(obj, indent=2, sort_keys=True).encode(), s3)


class _Digesting(io.RawIOBase):
    """Pass-through reader that feeds every byte read into a hashlib digest."""

    def __init__(self, raw, digest):
        self.raw, self.digest = raw, digest

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        data = self.raw.read(len(buf))
        n = len(data)
        buf[:n] = data
        self.digest.update(data)
        return n

    def close(self) -> None:
        self.raw.close()
        super().close()


def open_input(uri: str, s3=None, digest=None) -> BinaryIO:
    """Open a file for reading, gunzipping it when it starts with the gzip magic bytes.

    `digest` (a hashlib object) receives the stored (compressed) bytes as they are read.
    """
    fs, path = filesystem(uri, s3)
    raw = fs.open_input_stream(path, compression=None)
    if digest is not None:
        raw = _Digesting(raw, digest)
    buffered = io.BufferedReader(raw, buffer_size=1 << 20)
    if buffered.peek(2)[:2] == b"\x1f\x8b":
        return _OwnedGzip(fileobj=buffered)
    return buffered


class _OwnedGzip(gzip.GzipFile):
    """A GzipFile that also closes the stream it reads from."""

    def close(self) -> None:
        inner = self.fileobj
        super().close()
        if inner is not None:
            inner.close()


def local_path(uri: str) -> str:
    """Absolute local path for a local URI (Ray Data wants absolute paths); remote URIs unchanged."""
    return uri if is_remote(uri) else filesystem(uri)[1]


def absolute(uri: str) -> str:
    """Absolute local path, or the URI unchanged: Ray needs absolute storage paths."""
    return uri if is_remote(uri) else str(Path(uri).expanduser().resolve())
