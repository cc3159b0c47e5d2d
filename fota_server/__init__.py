"""FOTA server: LwM2M, HTTP(S) pull and OMA-DM firmware updates behind a ThingSpace SMS compatible API."""

__version__ = "0.1.0"
__all__ = ["__version__"]
