"""The installed version (``0.0.0`` in a source tree that was not installed)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tgbatch")
except PackageNotFoundError:
    __version__ = "0.0.0"
