"""The service graph learned from spans: caller → callee edges per time bucket."""
