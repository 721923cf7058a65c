"""Typed reads of environment variables, for the two places that load settings once
(server.config.Settings and points.program.Program). Each failure names the variable."""

from __future__ import annotations

from collections.abc import Mapping


class ConfigError(ValueError):
    """A setting is malformed; the message names the variable."""


def env_int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
    return value


def env_positive_float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{name} must be positive, got {value}")
    return value


def env_seconds(env: Mapping[str, str], name: str, default: float, high: float) -> float:
    """A duration in seconds, 0 to `high` (0 is allowed: "no wait")."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not 0 <= value <= high:  # also refuses nan
        raise ConfigError(f"{name} must be between 0 and {high:g} seconds, got {raw!r}")
    return value


def env_choice(env: Mapping[str, str], name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = env.get(name, default).upper() or default
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def env_rate(env: Mapping[str, str], name: str, default: float) -> float:
    """A rate per second, 0 (no limit) or positive."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value < 0 or value != value or value == float("inf"):
        raise ConfigError(f"{name} must be 0 (no limit) or a positive number, got {raw!r}")
    return value
