"""The fingerprint and environment keys now live in :mod:`bench.env`; this module keeps the old import path."""

from __future__ import annotations

from .env import ENV_KEYS, env_difference, fingerprint

__all__ = ["ENV_KEYS", "env_difference", "fingerprint"]
