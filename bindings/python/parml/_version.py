"""The package's version. Its MAJOR.MINOR must match the loaded libparml's
(parml/_lib.py checks this at import); PATCH may differ."""

__version__ = "0.3.0"
