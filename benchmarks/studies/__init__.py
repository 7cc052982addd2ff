"""Benchmark studies: scripts that measure one question and print its figures.

Each is run from the repository root as ``python -m benchmarks.studies.NAME`` (its module
docstring gives the command line). Studies sit above every layer - they may import any part of
edge - and are not installed with the package.
"""
