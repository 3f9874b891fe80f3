"""The ``tocsin`` command line: the parser built per command group, one module per group."""

from pipeline.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
