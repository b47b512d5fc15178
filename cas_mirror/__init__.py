"""cas-mirror: mirror conda channels and PyPI for networks that cannot install from the
internet. The version is defined here once (pyproject.toml reads it)."""

__version__ = "0.1.0"
