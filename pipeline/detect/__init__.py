"""Detect: run the rule and model engines per service, hot reload, replay (no Faust)."""
