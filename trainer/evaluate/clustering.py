"""Unsupervised classification accuracy: clusters matched to labels by the Hungarian method."""

from __future__ import annotations

import numpy as np


def contingency(pred: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """counts[i, j] = how many items in cluster i carry label j."""
    pred, labels = np.asarray(pred, dtype=np.int64), np.asarray(labels, dtype=np.int64)
    if pred.shape != labels.shape:
        raise ValueError(f"pred and labels differ in shape: {pred.shape} vs {labels.shape}")
    counts = np.zeros((pred.max(initial=0) + 1, labels.max(initial=0) + 1), dtype=np.int64)
    np.add.at(counts, (pred, labels), 1)
    return counts


def cluster_accuracy(pred, labels) -> tuple[float, dict[int, int]]:
    """Best one-to-one cluster -> label map (Hungarian) and the accuracy it gives.

    Clusters left unmatched (more clusters than labels) count as errors.
    """
    from scipy.optimize import linear_sum_assignment

    counts = contingency(pred, labels)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    total = max(1, len(np.asarray(pred)))
    return float(counts[rows, cols].sum() / total), {int(r): int(c) for r, c in zip(rows, cols)}
