"""Vectorised normalisers: raw string Series -> DataFrame(value, error, ...). See ARCHITECTURE.md."""
