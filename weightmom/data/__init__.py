"""Data: built-in datasets as device tensors (datasets.py), ImageFolder held in memory (imagefolder.py)
or streamed from disk (streaming.py), both decoding files with images.py, and datasets named by import
path (sources.py).

The names that were `weightmom.data`'s before it became a package stay importable from here.
"""

from weightmom.data.datasets import (
    DATASETS,
    TensorDataset,
    augment_batch,
    iterate_batches,
    load_dataset,
    normalize,
    split_validation,
)

__all__ = ["DATASETS", "TensorDataset", "augment_batch", "iterate_batches", "load_dataset", "normalize",
           "split_validation"]
