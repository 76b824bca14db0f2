"""Sub-commands of ``layerlab``: one module each, with ``add_parser(sub)`` and ``run(args) -> int``.

Each module's ``add_parser`` receives the sub-parsers object, adds its parser and sets
``func=run`` on it; ``engine.cli`` imports the modules listed here in order.
"""

from __future__ import annotations

import importlib
import logging
from types import ModuleType

__all__ = ["command_modules"]

logger = logging.getLogger(__name__)

_MODULES = [
    "inspect",
    "examples",
    "profile",
    "apply",
    "report",
    "gui",
    "evaluate",
    "sensitivity",
    "tune",
    "bench",
]


def command_modules() -> list[ModuleType]:
    """The command modules, imported (each keeps its heavy imports inside ``run``)."""
    return [importlib.import_module(f"engine.commands.{name}") for name in _MODULES]
