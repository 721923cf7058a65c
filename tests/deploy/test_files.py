"""deploy/: the environment file template lists every variable the server reads."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
READERS = ["server/config.py", "points/program.py"]


def test_the_environment_template_lists_every_variable() -> None:
    read = set()
    for path in READERS:
        read |= set(
            re.findall(r'"((?:SURGE_[A-Z_]+)|DATABASE_URL|REDIS_URL)"', (ROOT / path).read_text())
        )
    listed = set(re.findall(r"^#?([A-Z_]+)=", (ROOT / "deploy" / "surge.env").read_text(), re.M))

    assert len(read) > 50
    assert read <= listed, sorted(read - listed)
