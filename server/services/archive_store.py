"""Where month archives are kept: a directory (`file:///path`) or an S3 bucket
(`s3://bucket/prefix`), behind one small interface.

Every write is all-or-nothing, so a process killed mid-archive never leaves half an object
under its final name: the file store writes `<name>.tmp-<random>` next to the target and
renames it (rename is atomic within a directory); S3 makes an object visible only once its
PUT completes. Keys are relative paths such as `<church_id>/2024-03/messages.jsonl.gz`.

The S3 store takes its endpoint from the URL (`s3://bucket/prefix?endpoint=http://...`,
for S3-compatible servers; none means AWS) and its credentials from boto3's usual chain
(environment, shared config, instance role), never from our settings.
"""
from __future__ import annotations

import functools
import os
import secrets
import shutil
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit


class ArchiveStore(Protocol):
    def put_file(self, key: str, path: str) -> None:
        """Store the local file `path` under `key`, replacing any object there."""

    def put_bytes(self, key: str, data: bytes) -> None:
        """Store `data` under `key`, replacing any object there."""

    def get(self, key: str) -> bytes | None:
        """The object under `key`, or None when there is none."""

    def url_of(self, key: str) -> str:
        """The object's full URL, recorded in `archive_batches.url`."""


class FileStore:
    """Objects as files under one directory."""

    def __init__(self, root: str) -> None:
        self.root = root

    def _path(self, key: str) -> str:
        path = os.path.normpath(os.path.join(self.root, key))
        if not path.startswith(os.path.normpath(self.root) + os.sep):
            raise ValueError(f"archive key {key!r} leaves the archive directory")
        return path

    def _replace(self, key: str, write: Any) -> None:
        final = self._path(key)
        os.makedirs(os.path.dirname(final), exist_ok=True)
        temp = f"{final}.tmp-{secrets.token_hex(4)}"
        try:
            with open(temp, "wb") as out:
                write(out)
                out.flush()
                os.fsync(out.fileno())  # the rename must not outlive the bytes it names
            os.replace(temp, final)
        finally:
            if os.path.exists(temp):
                os.unlink(temp)

    def put_file(self, key: str, path: str) -> None:
        def copy(out: Any) -> None:
            with open(path, "rb") as source:
                shutil.copyfileobj(source, out)
        self._replace(key, copy)

    def put_bytes(self, key: str, data: bytes) -> None:
        self._replace(key, lambda out: out.write(data))

    def get(self, key: str) -> bytes | None:
        try:
            with open(self._path(key), "rb") as source:
                return source.read()
        except FileNotFoundError:
            return None

    def url_of(self, key: str) -> str:
        return "file://" + self._path(key)


class S3Store:
    """Objects in one bucket under a prefix, through boto3 (imported only when used)."""

    def __init__(self, bucket: str, prefix: str, endpoint_url: str | None) -> None:
        import boto3  # only deployments that archive to S3 need it installed
        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.client = boto3.client("s3", endpoint_url=endpoint_url)

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def put_file(self, key: str, path: str) -> None:
        self.client.upload_file(path, self.bucket, self._key(key))

    def put_bytes(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def get(self, key: str) -> bytes | None:
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        except self.client.exceptions.NoSuchKey:
            return None
        return answer["Body"].read()  # type: ignore[no-any-return]

    def url_of(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"


@functools.lru_cache(maxsize=8)
def open_store(url: str) -> ArchiveStore:
    """The store a `YWM_ARCHIVE_URL` names; one per URL per process (a boto3 client is
    thread-safe and costly to build, so requests share it)."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        return FileStore(parts.path)
    if parts.scheme == "s3" and parts.netloc:
        endpoint = parse_qs(parts.query).get("endpoint", [None])[0]
        return S3Store(parts.netloc, parts.path, endpoint)
    raise ValueError(f"unsupported archive URL {url!r}: use file:///path or s3://bucket/prefix")
