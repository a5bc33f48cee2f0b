"""Unsupervised classification accuracy: clusters matched to labels by the Hungarian method,
and the clusters themselves (predict_clusters: argmax q(s|x) of stored images).

Also NMI and ARI (computed from the contingency matrix, so no scikit-learn) and the matched
confusion matrix drawn as a PNG with Pillow.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from infoedit import engine


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


def _entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def nmi(pred, labels) -> float:
    """Normalised mutual information, I(pred; labels) / mean(H(pred), H(labels)).

    The arithmetic mean is scikit-learn's default, so numbers compare with the literature.
    """
    counts = contingency(pred, labels).astype(np.float64)
    n = counts.sum()
    if n == 0:
        raise ValueError("nmi: no items")
    h_pred, h_labels = _entropy(counts.sum(1)), _entropy(counts.sum(0))
    if h_pred == 0 and h_labels == 0:
        return 1.0  # both are one single group: identical partitions
    joint = counts[counts > 0] / n
    outer = np.outer(counts.sum(1), counts.sum(0))[counts > 0] / n ** 2
    mi = float((joint * np.log(joint / outer)).sum())
    return max(0.0, mi / ((h_pred + h_labels) / 2))


def ari(pred, labels) -> float:
    """Adjusted Rand index (Hubert & Arabie 1985): pair agreement corrected for chance."""
    counts = contingency(pred, labels).astype(np.float64)

    def pairs(x):
        return (x * (x - 1) / 2).sum()

    n = counts.sum()
    if n == 0:
        raise ValueError("ari: no items")
    index, rows, cols = pairs(counts), pairs(counts.sum(1)), pairs(counts.sum(0))
    expected = rows * cols / (n * (n - 1) / 2) if n > 1 else 0.0
    best = (rows + cols) / 2
    if best == expected:
        return 1.0  # degenerate (every item alone, or all in one group on both sides)
    return float((index - expected) / (best - expected))


def matched_confusion(pred, labels, mapping: dict[int, int]) -> tuple[np.ndarray, list[str]]:
    """Rows: true label; columns: the label each cluster was matched to, so the diagonal is right.

    Clusters the Hungarian map left out go to one extra last column, "unmatched".
    Returns (matrix, column names).
    """
    pred, labels = np.asarray(pred, dtype=np.int64), np.asarray(labels, dtype=np.int64)
    n_labels = int(labels.max(initial=0)) + 1
    unmatched = n_labels
    mapped = np.array([mapping.get(int(p), unmatched) for p in pred], dtype=np.int64)
    extra = bool((mapped == unmatched).any())
    matrix = np.zeros((n_labels, n_labels + extra), dtype=np.int64)
    np.add.at(matrix, (labels, mapped), 1)
    inverse = {v: k for k, v in mapping.items()}
    names = [f"{j} (s={inverse[j]})" if j in inverse else str(j) for j in range(n_labels)]
    return matrix, names + (["unmatched"] if extra else [])


def clustering_report(pred, labels) -> dict:
    """accuracy, nmi, ari, the cluster -> label map (string keys, for JSON) and n."""
    acc, mapping = cluster_accuracy(pred, labels)
    return {"accuracy": acc, "nmi": nmi(pred, labels), "ari": ari(pred, labels),
            "cluster_to_label": {str(k): v for k, v in sorted(mapping.items())},
            "n": int(len(np.asarray(pred)))}


def save_confusion_png(matrix: np.ndarray, path: str | Path, col_names: list[str] | None = None,
                       title: str = "") -> Path:
    """Draw the confusion matrix: cells shaded by the row's fraction, counts written in."""
    from PIL import Image, ImageDraw, ImageFont

    from infoedit.hub import atomic_write_bytes

    rows, cols = matrix.shape
    col_names = col_names or [str(j) for j in range(cols)]
    cell, left, top = 44, 40, 50
    img = Image.new("RGB", (max(300, left + cols * cell + 10), top + rows * cell + 30), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    frac = matrix / np.maximum(1, matrix.sum(1, keepdims=True))
    for i in range(rows):
        draw.text((6, top + i * cell + cell // 2 - 5), str(i), fill="black", font=font)
        for j in range(cols):
            x, y = left + j * cell, top + i * cell
            shade = int(255 * (1 - frac[i, j]))
            fill = (shade, shade, 255) if i == j else (255, shade, shade)
            draw.rectangle([x, y, x + cell - 1, y + cell - 1], fill=fill, outline=(200, 200, 200))
            ink = "white" if frac[i, j] > 0.6 else "black"
            draw.text((x + 3, y + cell // 2 - 5), str(int(matrix[i, j])), fill=ink, font=font)
    # Column names stacked one character per line would be unreadable; write them on two rows.
    for j, name in enumerate(col_names):
        label, note = (name.split(" ", 1) + [""])[:2]
        draw.text((left + j * cell + 3, top - 28), label, fill="black", font=font)
        draw.text((left + j * cell + 3, top - 16), note, fill="gray", font=font)
    draw.text((6, top + rows * cell + 8), title or "rows: true label, columns: matched cluster",
              fill="black", font=font)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)


@torch.inference_mode()
def predict_clusters(model, images: torch.Tensor, batch_size: int = 500, scale: float = 255.0):
    """argmax q(s|x) for uint8 images, in eval mode; returns (clusters, confidence)."""
    confidence, clusters = engine.encode_in_batches(
        model, images, lambda mu, sigma, logits: F.softmax(logits.float(), dim=1).max(dim=1), scale, batch_size)
    return clusters.cpu(), confidence.cpu()
