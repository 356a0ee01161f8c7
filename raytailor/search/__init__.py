"""Distributed search over tailoring hyper-parameters (the only package that imports Ray)."""

from raytailor.search.runner import resume_search, run_search

__all__ = ["resume_search", "run_search"]
