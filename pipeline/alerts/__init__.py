"""Alerts: CloudEvents, silences and their recurrence, matchers, operators' control events."""
