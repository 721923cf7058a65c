"""The `surge` command run as an operator would: a subprocess against the test's stores."""

from __future__ import annotations

import os
import subprocess
import sys

from server.app import Stores


def surge(stores: Stores, *args: str) -> subprocess.CompletedProcess[str]:
    """`surge ARGS...` with the stores' URLs and text logs; its exit code is the caller's
    to check (check=False), its output is captured."""
    env = {
        **os.environ,
        "DATABASE_URL": stores.database_url,
        "REDIS_URL": stores.redis_url,
        "SURGE_LOG_FORMAT": "text",
    }
    return subprocess.run(
        [sys.executable, "-m", "server.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
