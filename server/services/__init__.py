"""gRPC servicers, one module per service in protos/loyalty/v1: thin adapters. Each method
converts the request (server.convert), calls the domain, and converts the answer; errors are
mapped once, by server.interceptors.ErrorInterceptor."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeAlias

import grpc

if TYPE_CHECKING:  # the stubs make it generic
    Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]
