"""The version: the one place it is written (pyproject.toml reads it from here), so reading it costs no
package-metadata scan at start-up."""

__version__ = "0.2.0"
