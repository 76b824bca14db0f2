"""LayerLab's headless engine: one package per concern (see the README's code layout); no Qt below here.

Nothing under ``engine`` imports Qt; the CLI, the tests and notebooks use it directly.
"""

from __future__ import annotations

from importlib import metadata

__all__ = ["__version__"]

try:
    __version__ = metadata.version("layerlab")
except metadata.PackageNotFoundError:  # running from a checkout that is not installed
    __version__ = "0+unknown"
