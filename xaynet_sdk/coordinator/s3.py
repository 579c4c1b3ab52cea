"""Global models in an S3 bucket (``[s3]``), as the original coordinator stores them.

Each global model is uploaded after its round, as its bincode (the bytes ``GET /model``
serves), under the original's id ``<round id>_<hex of the round seed>``
(:func:`~.store.global_model_id`), and never overwritten. The bucket is created at start
if it does not exist. Any S3-compatible store works (AWS, MinIO, moto's server): the
``region`` setting gives its name and endpoint URL.

One difference from the original: an object that already exists with exactly the same bytes
counts as uploaded. That happens when a coordinator is killed after the upload and before it
recorded the round's end; the restarted coordinator unmasks the same aggregate again. An
existing object with other bytes is an error, as in the original.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

from .settings import S3Settings
from .store import StoreError

__all__ = ["S3ModelStore"]

_log = logging.getLogger("xaynet_sdk.coordinator.s3")


class S3ModelStore:
    """The ``global_models`` bucket, through boto3 (thread-safe client)."""

    def __init__(self, settings: S3Settings, *, timeout: float = 10.0) -> None:
        import boto3
        import botocore.config
        import botocore.exceptions

        self.bucket = settings.global_models
        self.endpoint = settings.endpoint
        self._errors: tuple[type[BaseException], ...] = (
            botocore.exceptions.BotoCoreError,
            botocore.exceptions.ClientError,
        )
        self._client: Any = boto3.client(
            "s3",
            region_name=settings.region_name,
            endpoint_url=settings.endpoint,
            aws_access_key_id=settings.access_key,
            aws_secret_access_key=settings.secret_access_key,
            config=botocore.config.Config(
                connect_timeout=timeout,
                read_timeout=timeout,
                retries={"max_attempts": 3, "mode": "standard"},
                s3={"addressing_style": "path"},
            ),
        )

    def describe(self) -> str:
        where = self.endpoint or "AWS"
        return f"S3 bucket {self.bucket!r} at {where}"

    def connect(self) -> "S3ModelStore":
        """Create the bucket unless it exists (a clear error if S3 cannot be reached)."""
        try:
            self._client.head_bucket(Bucket=self.bucket)
            return self
        except self._errors as e:
            if _code(e) not in ("404", "NoSuchBucket", "NotFound"):
                raise StoreError(f"cannot reach {self.describe()}: {e}") from None
        try:
            self._client.create_bucket(Bucket=self.bucket)
        except self._errors as e:
            if _code(e) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise StoreError(f"cannot create {self.describe()}: {e}") from None
        _log.info("created %s", self.describe())
        return self

    def get(self, model_id: str) -> Optional[bytes]:
        """The object's bytes, or None if there is no such object."""
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=model_id)
            return bytes(response["Body"].read())
        except self._errors as e:
            if _code(e) in ("NoSuchKey", "404", "NotFound"):
                return None
            raise StoreError(f"{self.describe()}: downloading {model_id} failed: {e}") from None

    def put(self, model_id: str, data: bytes) -> None:
        """Upload unless an object with this id exists (same bytes: done; others: error)."""
        existing = self.get(model_id)
        if existing is not None:
            if existing == data:
                _log.info("global model %s is already in %s", model_id, self.describe())
                return
            raise StoreError(
                f"{self.describe()}: object {model_id} already exists with other bytes; global"
                " models are never overwritten"
            )
        try:
            self._client.put_object(Bucket=self.bucket, Key=model_id, Body=data)
        except self._errors as e:
            raise StoreError(f"{self.describe()}: uploading {model_id} failed: {e}") from None


def _code(error: BaseException) -> str:
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""
