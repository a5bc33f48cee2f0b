"""Metrics: unsupervised accuracy and friends."""
