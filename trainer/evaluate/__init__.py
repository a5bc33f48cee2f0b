"""Metrics: clustering ACC/NMI/ARI (clustering), the pseudo-label CNN (pseudo_label), the
FactorVAE score (factorvae), FID (fid), and `infoedit evaluate` on top of them (command)."""
