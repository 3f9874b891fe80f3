"""Backtest and shadow: try a candidate rule set or model version on stored telemetry
through the stream's own steps, and compare it with the current detectors."""
