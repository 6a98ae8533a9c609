"""The platform-side client: submit jobs to the hub's active worker and see the workers.

from giskard.client import HubClient
with HubClient("localhost:40051") as hub:
    hub.workers()
    hub.predict(model, dataframe)
"""

from __future__ import annotations

import hashlib
from types import TracebackType
from typing import Any

import cloudpickle
import grpc

from giskard import codec
from giskard.address import parse_address
from giskard.credentials import LOCAL_ADMIN_KEY, dial_target, resolve
from giskard.errors import (
    AuthenticationError,
    DecodingError,
    GiskardError,
    HubUnavailableError,
    JobError,
    JobTimeoutError,
    NoWorkerError,
    ProtocolError,
)
from giskard.protocol import CHANNEL_OPTIONS, iter_chunks, sha256_of
from giskard.rpc.v1 import admin_pb2, admin_pb2_grpc, client_pb2, client_pb2_grpc, common_pb2
from giskard.rpc_errors import describe_rpc_error
from giskard.tls import channel_security, explain_failure
from giskard.worker.info import info_from_proto


class HubClient:
    """A connection to a hub's client API. Thread-safe; close it, or use it as a context manager."""

    def __init__(
        self,
        address: str = "localhost:40051",
        *,
        api_key: str | None = None,
        api_key_file: str | None = None,
        tls: bool = False,
        ca_file: str | None = None,
        insecure: bool = False,
    ) -> None:
        """`api_key` defaults to $GISKARD_API_KEY, then to the local admin key of a hub
        on this machine (see giskard.credentials). TLS is used to a non-loopback hub, or
        when `tls` or `ca_file` (a PEM of the hub's CA or certificate) asks for it; see
        giskard.tls for `insecure`."""
        self.address = parse_address(address)
        credentials = resolve(self.address.host, api_key=api_key, api_key_file=api_key_file)
        self._metadata = credentials.metadata()
        self._security = channel_security(
            self.address.host, tls=tls, ca_file=ca_file, insecure=insecure
        )
        self._local = credentials.source == LOCAL_ADMIN_KEY and not self._security.tls
        target = dial_target(self.address.host, self.address.port, credentials, self._security.tls)
        if self._security.tls:
            creds = self._security.credentials()
            self._channel = grpc.secure_channel(target, creds, options=CHANNEL_OPTIONS)
        else:
            self._channel = grpc.insecure_channel(target, options=CHANNEL_OPTIONS)
        self._stub = client_pb2_grpc.PlatformStub(self._channel)
        self._admin = admin_pb2_grpc.AdminStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> HubClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def workers(self) -> list[dict[str, Any]]:
        """The connected workers' info, the active one first; each has an `active` flag."""
        reply = self._call(self._stub.ListWorkers, client_pb2.ListWorkersRequest())
        return [
            {
                **info_from_proto(worker.info),
                "active": worker.active,
                "connected_at": worker.connected_at,
                "peer": worker.peer,
            }
            for worker in reply.workers
        ]

    def predict(
        self,
        model: Any,
        data: Any,
        method: str = "predict",
        *,
        wait_for_worker_s: float = 0.0,
        timeout_s: float | None = None,
    ) -> Any:
        """`getattr(model, method)(data)`, computed by the hub's active worker; gives up
        after `timeout_s` (waiting for a worker included)."""
        model_ref = self._upload([cloudpickle.dumps(model)])
        data_ref = self._upload(codec.encode(data))
        spec = common_pb2.JobSpec(
            predict=common_pb2.PredictJob(model=model_ref, data=data_ref, method=method)
        )
        return self._run(spec, wait_for_worker_s, timeout_s)

    def info(
        self, *, wait_for_worker_s: float = 0.0, timeout_s: float | None = None
    ) -> dict[str, Any]:
        """The active worker's info, freshly collected by the worker itself."""
        spec = common_pb2.JobSpec(info=common_pb2.InfoJob())
        return self._run(spec, wait_for_worker_s, timeout_s)

    def create_key(self, role: str, name: str = "") -> tuple[dict[str, Any], str]:
        """A new API key (admin only): its info, and the key itself, which is shown once."""
        created = self._call(
            self._admin.CreateKey, admin_pb2.CreateKeyRequest(role=role, name=name)
        )
        return _key_info(created.info), created.key

    def list_keys(self) -> list[dict[str, Any]]:
        """Every key's name, role, creation time and whether it is revoked (admin only)."""
        return [
            _key_info(k) for k in self._call(self._admin.ListKeys, admin_pb2.ListKeysRequest()).keys
        ]

    def revoke_key(self, name: str) -> dict[str, Any]:
        """Revoke a key; the hub closes what runs with it (admin only)."""
        return _key_info(self._call(self._admin.RevokeKey, admin_pb2.RevokeKeyRequest(name=name)))

    def _upload(self, frames: list[bytes | memoryview]) -> common_pb2.ArtifactRef:
        sha256, size = sha256_of(frames)
        ref = common_pb2.ArtifactRef(sha256=sha256, size=size)
        missing = self._call(self._stub.MissingArtifacts, client_pb2.ArtifactList(artifacts=[ref]))
        if missing.artifacts:
            self._call(self._stub.UploadArtifact, _upload_messages(ref, frames))
        return ref

    def _run(
        self, spec: common_pb2.JobSpec, wait_for_worker_s: float, timeout_s: float | None
    ) -> Any:
        request = client_pb2.RunJobRequest(spec=spec, wait_for_worker_s=wait_for_worker_s)
        result = bytearray()
        try:
            events = self._stub.RunJob(request, metadata=self._metadata, timeout=timeout_s)
            for event in events:
                kind = event.WhichOneof("kind")
                if kind == "output":
                    result += event.output.chunk
                elif kind == "end":
                    return _finish(event.end, result)
        except grpc.RpcError as exc:
            raise self._error(exc) from None
        raise ProtocolError("the hub ended the job without a result")

    def _call(self, method: Any, request: Any) -> Any:
        try:
            return method(request, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise self._error(exc) from None

    def _error(self, exc: grpc.RpcError) -> GiskardError:
        code = exc.code()  # type: ignore[attr-defined]
        if code == grpc.StatusCode.FAILED_PRECONDITION:
            return NoWorkerError(exc.details())  # type: ignore[attr-defined]
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return JobTimeoutError(f"no result from the hub at {self.address} in time")
        if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
            return AuthenticationError(f"the hub at {self.address} refused: {exc.details()}")  # type: ignore[attr-defined]
        if code == grpc.StatusCode.UNAVAILABLE:
            host, port = self.address.host, self.address.port
            reason = explain_failure(
                describe_rpc_error(exc), host, port, self._security, local_socket=self._local
            )
            return HubUnavailableError(f"cannot reach the hub at {self.address}: {reason}")
        return GiskardError(f"the hub at {self.address} answered {code.name}: {exc.details()}")  # type: ignore[attr-defined]


def _upload_messages(ref: common_pb2.ArtifactRef, frames: list[bytes | memoryview]) -> Any:
    # The first message announces the artifact, even an empty one.
    yield client_pb2.Upload(ref=ref)
    for chunk in iter_chunks(frames):
        yield client_pb2.Upload(data=chunk)


def _finish(end: common_pb2.JobEnd, result: bytearray) -> Any:
    if end.WhichOneof("outcome") == "failure":
        failure = end.failure
        raise JobError(
            failure.message, remote_type=failure.type, remote_traceback=failure.traceback
        )
    expected = end.success.result
    if len(result) != expected.size or hashlib.sha256(result).hexdigest() != expected.sha256:
        raise ProtocolError("the job's result does not match its announced size and SHA-256")
    # Never unpickle what a worker sends: the safe decoder refuses anything but data.
    try:
        return codec.decode(result)
    except DecodingError as exc:
        raise ProtocolError(f"the worker sent a result that is not valid data: {exc}") from None


def _key_info(info: Any) -> dict[str, Any]:
    return {
        "name": info.name,
        "role": info.role,
        "created_at": info.created_at,
        "revoked": info.revoked,
    }
