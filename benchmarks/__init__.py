"""Benchmarks: giskard against raw gRPC, in-process calls, Dask and Ray, in one run.

Run `make bench` (or `.venv/bin/python -m benchmarks --help`); see benchmarks/README.md.
"""
