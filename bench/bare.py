"""The bare floor: the least a gRPC answer can cost in this language on this machine.

    python -m bench.bare --address 127.0.0.1:PORT

A `grpc.aio` server answering `grpc.health.v1.Health/Check` and nothing else: no
interceptors, no stores, no logging per call; the same server options, handler registration
and event loop choice (SURGE_UVLOOP) as Surge's own server (server/app.py, server/cli.py). What Surge
adds on top of it (the edge: credentials, metrics, access log, request ids, error mapping;
then the redemption itself) is what the benchmark's ratios against this floor show.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal

import grpc
import uvloop
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from common.env import env_choice
from server.config import Settings
from server.generic_handlers import GenericHandlersOnly


async def serve(address: str, settings: Settings) -> None:
    server = grpc.aio.server(
        options=[  # as server/app.py sets them
            ("grpc.max_receive_message_length", settings.max_message_bytes),
            ("grpc.max_metadata_size", settings.max_metadata_bytes),
            ("grpc.absolute_max_metadata_size", settings.max_metadata_bytes),
        ]
    )
    servicer = health.aio.HealthServicer()
    # Registered as Surge registers it: generic handlers only (server/registry.py says why).
    health_pb2_grpc.add_HealthServicer_to_server(servicer, GenericHandlersOnly(server).as_server())
    server.add_insecure_port(address)
    await server.start()
    await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await server.stop(grace=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bare", description=__doc__)
    parser.add_argument("--address", required=True, help="host:port, e.g. 127.0.0.1:50099")
    args = parser.parse_args(argv)
    settings = Settings(grpc_address=args.address)  # its message and metadata bounds
    on_uvloop = env_choice(os.environ, "SURGE_UVLOOP", "ON", ("ON", "OFF")) == "ON"
    run = uvloop.run if on_uvloop else asyncio.run
    run(serve(args.address, settings))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
