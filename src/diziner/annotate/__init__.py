"""diziner.annotate: annotator prompts, lenient parsing, grounding, chunking, the runner.

See docs/annotation.md. Jinja2 is imported only when a prompt is first rendered.
"""
from diziner.annotate.chunk import Chunk, ChunkPlan, chunk_text, merge_chunk_spans, split_sentences
from diziner.annotate.ground import GroundingResult, find_occurrences, ground_mentions, is_boundary
from diziner.annotate.parse import LabelMatcher, ParsedMention, ParseResult, parse_mentions
from diziner.annotate.prompt import (TEMPLATE_VERSION, build_reask_request, build_request, mentions_json_schema,
                                     template_id)
from diziner.annotate.runner import (AnnotatorRun, DocResult, annotate_document, annotate_documents,
                                     annotate_documents_sync)

__all__ = [
    "Chunk", "ChunkPlan", "chunk_text", "merge_chunk_spans", "split_sentences",
    "GroundingResult", "find_occurrences", "ground_mentions", "is_boundary",
    "LabelMatcher", "ParsedMention", "ParseResult", "parse_mentions",
    "TEMPLATE_VERSION", "build_reask_request", "build_request", "mentions_json_schema", "template_id",
    "AnnotatorRun", "DocResult", "annotate_document", "annotate_documents", "annotate_documents_sync",
]
