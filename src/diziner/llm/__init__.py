"""The LLM layer: one small async interface and one adapter per backend.

Heavy SDKs (openai, anthropic, llama_cpp) are imported only inside their adapter.
"""
from diziner.llm.base import LLMClient, LLMRequest, LLMResponse

__all__ = ["LLMClient", "LLMRequest", "LLMResponse"]
