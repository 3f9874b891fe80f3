"""The bottom layer: record, detection and problem types, codecs, dead letters, times and
column batches. Imports nothing of Tocsin's but the errors."""
