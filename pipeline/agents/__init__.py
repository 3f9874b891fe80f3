"""Faust agents: the only place where Kafka streams meet Tocsin's logic."""
