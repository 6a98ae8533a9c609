"""Requests whose bytes do not parse get a deliberate answer, INVALID_ARGUMENT.

gRPC decodes a request with its method's deserializer: for a method taking one request it
does so before the servicer runs, and a DecodeError then ends the call as UNKNOWN (what a
crashed servicer answers). The services are registered through `DecodingServer`, which has
such requests decoded by a wrapper of the method instead. It wraps each method once, at
registration: an interceptor would do the same work again at every call. Streamed requests
are read by the servicers themselves, which catch DecodeError where they read them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

import grpc
from google.protobuf.message import DecodeError

UNDECODABLE = "a message that does not decode"


class DecodingServer:
    """Stands for a server while a generated `add_*Servicer_to_server` registers a service:
    the handlers it gives are registered decoding their requests as described above."""

    def __init__(self, server: grpc.aio.Server) -> None:
        self._server = server

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self._server.add_generic_rpc_handlers([_DecodingHandler(h) for h in handlers])

    def add_registered_method_handlers(
        self, service: str, handlers: Mapping[str, grpc.RpcMethodHandler]
    ) -> None:
        decoding = {name: decoding_handler(handler) for name, handler in handlers.items()}
        self._server.add_registered_method_handlers(service, decoding)


class _DecodingHandler(grpc.GenericRpcHandler):
    """A generic handler's methods, each wrapped once, the first time it is looked up."""

    def __init__(self, handler: grpc.GenericRpcHandler) -> None:
        self._handler = handler
        self._wrapped: dict[str, grpc.RpcMethodHandler | None] = {}

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        method = handler_call_details.method
        if method not in self._wrapped:
            # A generated service's methods are a fixed few: this does not grow.
            self._wrapped[method] = decoding_handler(self._handler.service(handler_call_details))
        return self._wrapped[method]


def decoding_handler(handler: grpc.RpcMethodHandler | None) -> Any:
    """`handler` with its one request decoded by its behaviour, which answers a request that
    does not decode with INVALID_ARGUMENT; streamed requests are left to the servicer."""
    if handler is None or handler.request_streaming or handler.request_deserializer is None:
        return handler
    decode = handler.request_deserializer
    if handler.response_streaming:
        return handler._replace(
            request_deserializer=None, unary_stream=_streaming(handler.unary_stream, decode)
        )
    return handler._replace(
        request_deserializer=None, unary_unary=_unary(handler.unary_unary, decode)
    )


async def _decoded(decode: Callable[[bytes], Any], raw: bytes, context: Any) -> Any:
    try:
        return decode(raw)
    except DecodeError:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, UNDECODABLE)


def _unary(behaviour: Callable[..., Awaitable[Any]], decode: Callable[[bytes], Any]) -> Any:
    async def decoding(raw: bytes, context: Any) -> Any:
        return await behaviour(await _decoded(decode, raw, context), context)

    return decoding


def _streaming(behaviour: Callable[..., AsyncIterator[Any]], decode: Callable[[bytes], Any]) -> Any:
    async def decoding(raw: bytes, context: Any) -> AsyncIterator[Any]:
        async for response in behaviour(await _decoded(decode, raw, context), context):
            yield response

    return decoding
