"""Online anomaly models (river-based scorers, per-series state, model registry)."""
