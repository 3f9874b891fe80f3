"""The C part of the build: the OTLP metrics wire scanner and the JSON metric scanner
(both optional: without a C compiler Tocsin installs and decodes with Python alone)."""

from setuptools import Extension, setup

setup(ext_modules=[Extension(
    "pipeline.events._otlpwire",
    sources=["pipeline/events/_otlpwire.c"],
    # no fused multiply-add: quantiles must round exactly as the Python path's do
    extra_compile_args=["-O2", "-ffp-contract=off", "-std=c99"],
    optional=True,
), Extension(
    "pipeline.events._jsonscan",
    sources=["pipeline/events/_jsonscan.c"],
    extra_compile_args=["-O2", "-std=c99"],
    optional=True,
)])
