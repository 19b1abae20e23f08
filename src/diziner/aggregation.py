"""How the delivered annotation is chosen: the text form of an aggregation rule.

A light module (no numpy) so that the pool file, the options and the command line can
check a rule's name; :func:`diziner.analysis.aggregate` applies it.
"""
from __future__ import annotations

from dataclasses import dataclass

from diziner.errors import DizinerError

DEFAULT_AGGREGATION = "consensus"


@dataclass(frozen=True)
class Aggregation:
    """How the delivered annotation is chosen among the proposed spans.

    Written as text (CLI ``--aggregation``, options, run.json): ``consensus`` (token
    consensus), ``union`` (= ``vote:0``), ``vote:X`` (span vote, weight ≥ X),
    ``reliability`` (annotator reliabilities fitted without gold,
    :mod:`diziner.analysis.reliability`) or ``reliability:label`` (per annotator and label).
    """

    method: str = "consensus"
    min_support: float | None = None
    per_label: bool = False

    @classmethod
    def parse(cls, text: "str | Aggregation | None", min_support: float | None = None) -> "Aggregation":
        """Read the text form; a bare ``min_support`` (the older option) means ``vote:min_support``."""
        if isinstance(text, Aggregation):
            return text
        if text is None:
            return cls("vote", float(min_support)) if min_support is not None else cls.parse(DEFAULT_AGGREGATION)
        t = str(text).strip().lower()
        if min_support is not None and not t.startswith("vote"):
            raise DizinerError(f"min_support applies to the span vote, not to aggregation {text!r}")
        if t == "consensus":
            return cls("consensus")
        if t == "union":
            return cls("vote", 0.0)
        if t in ("reliability", "reliability:annotator"):
            return cls("reliability")
        if t == "reliability:label":
            return cls("reliability", per_label=True)
        if t == "vote" or t.startswith("vote:"):
            raw = t.partition(":")[2] or (None if min_support is None else str(min_support))
            try:
                x = float(raw) if raw is not None else 0.5
            except ValueError:
                raise DizinerError(f"aggregation {text!r}: the vote threshold must be a number") from None
            if not 0.0 <= x <= 1.0:
                raise DizinerError(f"aggregation {text!r}: the vote threshold must be within [0, 1]")
            return cls("vote", x)
        raise DizinerError(f"unknown aggregation {text!r}; use consensus, union, vote:X, reliability "
                         "or reliability:label")

    @staticmethod
    def pick(explicit: str | None, min_support: float | None, pool_default: str | None) -> str | None:
        """The one precedence rule: a rule named on the command line (or ``min_support``, the
        span vote's shorthand) wins over the pool file's ``aggregation:``; None = the default."""
        return explicit if explicit is not None or min_support is not None else pool_default

    def __str__(self) -> str:
        if self.method == "vote":
            return "union" if self.min_support == 0 else f"vote:{self.min_support:g}"
        if self.method == "reliability":
            return "reliability:label" if self.per_label else "reliability"
        return "consensus"

    def kwargs(self) -> dict:
        """Keyword arguments of :func:`aggregate`."""
        if self.method == "vote":
            return {"min_support": self.min_support}
        if self.method == "reliability":
            return {"reliability": "label" if self.per_label else "annotator"}
        return {}
