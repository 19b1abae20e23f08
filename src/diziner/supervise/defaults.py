"""Default limits of a revision: defined once in :mod:`diziner.options` (``DEFAULTS.limits``),
named here too for the code that imported them from the supervisor package.
"""
from __future__ import annotations

from diziner.options import DEFAULT_MAX_CHANGE_RATIO

__all__ = ["DEFAULT_MAX_CHANGE_RATIO"]
