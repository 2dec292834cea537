"""tgbatch: run large prompt datasets through text-generation-inference servers without losing a row."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tgbatch")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
