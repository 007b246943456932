"""raymia: measure how regularization trades utility for membership privacy, at sweep scale."""

__version__ = "0.1.0"
