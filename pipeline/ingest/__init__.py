"""Ingest: decode and validate raw messages, store good records, dead-letter bad ones."""
