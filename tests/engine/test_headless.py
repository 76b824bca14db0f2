"""The engine must import and work where Qt is absent (a server, a notebook, CI without a display)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import engine


def test_engine_imports_without_qt() -> None:
    modules = sorted(
        m.name for m in pkgutil.walk_packages(engine.__path__, "engine.") if not m.name.endswith("__main__")
    )
    script = (
        "import sys\n"
        "for blocked in ('PySide6', 'pyqtgraph', 'PyQt5', 'PyQt6', 'gui'):\n"
        "    sys.modules[blocked] = None  # any import of these now fails\n"
        f"for name in {modules!r}:\n"
        "    __import__(name)\n"
        "print('ok', len(sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok")
    assert len(modules) >= 5
