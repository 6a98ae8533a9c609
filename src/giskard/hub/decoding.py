"""Requests whose bytes do not parse get a deliberate answer, INVALID_ARGUMENT.

gRPC decodes a request with its method's deserializer: for a method taking one request it
does so before the servicer runs, and a DecodeError then ends the call as UNKNOWN (what a
crashed servicer answers). The interceptor below has such requests decoded here instead.
Streamed requests are read by the servicers themselves, which catch DecodeError where they
read them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError

UNDECODABLE = "a message that does not decode"


class DecodingInterceptor(grpc.aio.ServerInterceptor):
    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
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
