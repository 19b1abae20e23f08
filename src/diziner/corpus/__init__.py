"""Documents, spans, tokens and the readers/writers of annotation formats."""
from diziner.corpus.model import Document, Span, tokenize

__all__ = ["Document", "Span", "tokenize"]
