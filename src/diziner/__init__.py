"""diziner: zero-shot NER by disagreement-guided instruction refinement (DiZiNER).

The core import is light: heavy backends (llama_cpp, anthropic, openai) are imported
only inside the adapter that needs them.
"""
from diziner.corpus.model import Document, Span
from diziner.errors import DizinerError, InputError

__version__ = "0.1.0"
__all__ = ["Annotator", "Document", "Span", "DizinerError", "InputError", "__version__"]


def __getattr__(name: str):  # lazy: ``diziner.Annotator`` imports the API only when used
    if name == "Annotator":
        from diziner.api import Annotator

        return Annotator
    raise AttributeError(f"module 'diziner' has no attribute {name!r}")
