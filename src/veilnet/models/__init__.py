"""Model engines behind one interface: llama.cpp in-process (xllamacpp) and any OpenAI-compatible upstream."""

from veilnet.models.catalog import MODELS, ModelSpec, model_path
from veilnet.models.engine import ModelEngine, ModelInfo

__all__ = ["MODELS", "ModelEngine", "ModelInfo", "ModelSpec", "model_path"]
