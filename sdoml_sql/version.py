"""The package version, importable from every stage."""

__version__ = "0.1.0"
