"""Talking to a running worker over its web pages, or to the store directly (no Faust)."""
