"""The shared NER benchmarks: registry of datasets, their files, counts and schemas."""
from diziner.benchmarks.registry import DATASETS, DatasetInfo, dataset, load_split, schema_path, shared_root

__all__ = ["DATASETS", "DatasetInfo", "dataset", "load_split", "schema_path", "shared_root"]
