"""The admin gRPC service: create, list and revoke API keys; control connected workers."""

from __future__ import annotations

import logging

import grpc

from giskard.errors import KeyManagementError
from giskard.hub.auth import Authenticator
from giskard.hub.keys import KeyRecord
from giskard.hub.registry import UnknownWorkerError, WorkerRegistry, find_worker
from giskard.hub.worker_control import DOING, WorkerNotReadingError, control
from giskard.rpc.v1 import admin_pb2, admin_pb2_grpc, worker_pb2

logger = logging.getLogger(__name__)


class AdminService(admin_pb2_grpc.AdminServicer):
    def __init__(self, auth: Authenticator, registry: WorkerRegistry) -> None:
        self._auth = auth
        self._registry = registry

    async def CreateKey(
        self, request: admin_pb2.CreateKeyRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.CreatedKey:
        await self._auth.require(context, ["admin"], "manage keys")
        try:
            record, key = self._auth.store.create(request.role, request.name)
        except KeyManagementError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            raise  # unreachable: abort raises
        logger.info("Created the %s key %s", record.role, record.name)
        return admin_pb2.CreatedKey(info=_info(record), key=key)

    async def ListKeys(
        self, request: admin_pb2.ListKeysRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.KeyList:
        await self._auth.require(context, ["admin"], "manage keys")
        return admin_pb2.KeyList(keys=[_info(r) for r in self._auth.store.records()])

    async def RevokeKey(
        self, request: admin_pb2.RevokeKeyRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.KeyInfo:
        await self._auth.require(context, ["admin"], "manage keys")
        try:
            record = self._auth.store.revoke(request.name)
        except KeyManagementError as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
            raise
        closed = self._auth.revoked(record.name)
        logger.info("Revoked the key %s; closed %d live call(s)", record.name, closed)
        return _info(record)

    async def ControlWorker(
        self, request: admin_pb2.ControlWorkerRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.ControlWorkerReply:
        key = await self._auth.require(context, ["admin"], "control workers")
        if request.action not in DOING:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "no known action given")
        try:
            session = find_worker(self._registry, request.worker)
            order = worker_pb2.Control(
                action=request.action, force=request.force, by=f"admin key {key.name!r}"
            )
            control(self._registry, session, order)
        except UnknownWorkerError as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
            raise
        except WorkerNotReadingError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
            raise
        return admin_pb2.ControlWorkerReply(worker=session.info)


def _info(record: KeyRecord) -> admin_pb2.KeyInfo:
    return admin_pb2.KeyInfo(
        name=record.name, role=record.role, created_at=record.created_at, revoked=record.revoked
    )
