"""Corpus-scale annotation on Ray Data (``diziner annotate --engine ray``; docs/scale.md).

Optional: needs ``pip install 'diziner[ray]'``. Nothing here imports Ray at import time;
:func:`annotate_ray` connects to a cluster (or starts a local runtime) when called.
"""
from diziner.scale.engine import RayOptions, annotate_file_ray, annotate_ray

__all__ = ["RayOptions", "annotate_file_ray", "annotate_ray"]
