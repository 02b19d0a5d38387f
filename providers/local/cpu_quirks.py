"""Loading a llama.cpp model without the CPU feature that crashes it: Intel AMX.

``pip install llama-cpp-python`` compiles llama.cpp for the installing CPU (``-march=native``). On a CPU with AMX
(Sapphire Rapids and later Xeons, common in clouds) llama.cpp then repacks Q4_0, Q4_1 and Q8_0 weights into AMX
tiles at load time, and the first ``llama_decode`` kills the process with a segmentation fault: measured here with
llama-cpp-python 0.3.36 and the embedded SmolLM2 Q4_1 (llama.cpp's own AMX CI job shows the same exit 139). With
``use_extra_bufts=False`` the weights stay in plain CPU buffers (AVX-512 kernels), and the model answers.

Hand-written because no library offers the switch: llama-cpp-python's ``Llama`` does not expose that model
parameter; it builds its parameters from ``llama_cpp.llama_cpp.llama_model_default_params()``, so that function is
wrapped for the duration of one load, under a lock (two loads at once would otherwise see each other's wrapper).
Only on AMX CPUs: elsewhere the extra buffers (weight repacking for AVX2) are a speed-up that works.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_CPUINFO = Path("/proc/cpuinfo")
_AMX_FLAGS = frozenset({"amx_tile", "amx_int8", "amx_bf16"})
_PATCH_LOCK = threading.Lock()


def cpu_flags(cpuinfo: str) -> frozenset[str]:
    """Return the CPU feature flags listed in a /proc/cpuinfo text (empty when it lists none)."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


@functools.cache
def has_amx() -> bool:
    """Say whether this machine's CPU has AMX (Linux; elsewhere False, and llama.cpp keeps its defaults)."""
    try:
        return bool(cpu_flags(_CPUINFO.read_text(errors="replace")) & _AMX_FLAGS)
    except OSError:
        return False


@contextlib.contextmanager
def safe_model_params(*, avoid_extra_buffers: bool) -> Iterator[None]:
    """While the block runs, a ``llama_cpp.Llama`` built in this process loads without llama.cpp's extra buffer types
    (AMX, weight repacking) when ``avoid_extra_buffers``; otherwise with llama.cpp's defaults."""
    if not avoid_extra_buffers:
        yield
        return
    import llama_cpp.llama_cpp as low_level

    with _PATCH_LOCK:
        original = low_level.llama_model_default_params

        def without_extra_buffers() -> Any:
            params = original()
            params.use_extra_bufts = False
            return params

        low_level.llama_model_default_params = without_extra_buffers
        try:
            yield
        finally:
            low_level.llama_model_default_params = original
