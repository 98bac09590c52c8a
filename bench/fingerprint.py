"""A hash of what makes two measurements comparable: the case definition and the environment."""

from __future__ import annotations

import hashlib
import json

__all__ = ["ENV_KEYS", "env_difference", "fingerprint"]

# Environment fields that change what a figure means (a new CPU or torch makes ratios incomparable).
ENV_KEYS = ("torch", "transformers", "onnxruntime", "cpu", "gpu", "machine")


def fingerprint(case, env: dict) -> str:
    payload = {"case": case.to_dict(), "env": {k: env.get(k) for k in ENV_KEYS}}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def env_difference(a: dict, b: dict) -> tuple[str, object, object] | None:
    """The first fingerprinted environment field that differs between two runs, or None."""
    for k in ENV_KEYS:
        if a.get(k) != b.get(k):
            return k, a.get(k), b.get(k)
    return None
