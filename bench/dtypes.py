"""Which dtypes make sense on this CPU: a half-precision case (or baseline) on a CPU without the
instructions for it is skipped with the reason instead of timing an emulation.

- ``bfloat16`` needs ``avx512_bf16`` or ``amx_bf16``: with them torch's oneDNN matmuls run bf16 natively
  (the 0.30x of dense fp32 measured on a Xeon with AMX); without them bf16 is converted to fp32 and back
  around every kernel, which measures the conversion, not bf16.
- ``float16`` needs ``avx512_fp16`` or ``amx_fp16`` for native fp16 arithmetic; ``f16c`` (every x86 CPU of the
  last decade) only converts, so fp16 is skipped on those.
CUDA cases are not judged here (the GPU runtimes say what they support). The flags come from
:func:`bench.env.cpu_flags`; set ``PRUNEBENCH_FORCE_DTYPES=1`` to run half dtypes on any CPU anyway.
"""

from __future__ import annotations

import logging
import os

from . import env

__all__ = ["DTYPE_FLAGS", "FORCE_ENV", "dtype_unavailable", "missing_flags"]

log = logging.getLogger("bench.dtypes")

# dtype -> CPU flags of which at least one makes it native
DTYPE_FLAGS: dict[str, tuple[str, ...]] = {"bfloat16": ("avx512_bf16", "amx_bf16"), "float16": ("avx512_fp16", "amx_fp16")}
FORCE_ENV = "PRUNEBENCH_FORCE_DTYPES"


def missing_flags(dtype: str, flags: tuple[str, ...] | None = None) -> tuple[str, ...] | None:
    """The flags ``dtype`` needs (any one of them) when this CPU has none of them, else None."""
    need = DTYPE_FLAGS.get(dtype)
    if not need:
        return None
    have = env.cpu_flags() if flags is None else flags
    return None if any(f in have for f in need) else need


def dtype_unavailable(case) -> str | None:
    """Why ``case`` (or its baseline) cannot run its dtype natively on this CPU, or None."""
    if case.device != "cpu" or os.environ.get(FORCE_ENV) == "1":
        return None
    for what, dtype in (("the case", case.dtype), ("its baseline", case.baseline.dtype)):
        need = missing_flags(dtype)
        if need:
            have = ", ".join(env.cpu_flags()) or "none recorded"
            return (f"{dtype} on this CPU ({what}) would be emulated: it needs {' or '.join(need)} and this CPU has "
                    f"none of them (its vector flags: {have}); use float32 here, or set {FORCE_ENV}=1 to time it anyway")
    return None
