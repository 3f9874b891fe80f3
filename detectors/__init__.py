"""Windowed rule detectors (rule model, YAML loading, window aggregation, evaluators)."""
