"""Serverless AI: CLI and the embedded one-machine platform (Triton + functions + gateway)."""

__version__ = "0.1.0"
