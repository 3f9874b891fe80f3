"""The C part of the build: the OTLP metrics wire scanner (optional: without a C compiler
Tocsin installs and decodes OTLP with the protobuf library alone)."""

from setuptools import Extension, setup

setup(ext_modules=[Extension(
    "pipeline.events._otlpwire",
    sources=["pipeline/events/_otlpwire.c"],
    # no fused multiply-add: quantiles must round exactly as the Python path's do
    extra_compile_args=["-O2", "-ffp-contract=off", "-std=c99"],
    optional=True,
)])
