"""The report (HTML or PDF) written in the worker process, from a snapshot of the window's session.

Drawing a PDF (fpdf2, fontTools parsing and subsetting fonts) holds the GIL for seconds; on a thread
of the window's process it starved the GUI thread for 0.2-0.6 s at a time. So the window sends the job
a ``SessionSnapshot`` (the session's fields as they are when the user asks, plain picklable values
without the graph), and the worker loads the graph by path and shapes (``engine.jobs.loaded``, usually
already loaded for the window's other jobs), checks it is the very model (sha256), and writes the
report as ``layerlab report`` does. A cancel abandons the drawing and leaves no file. No Qt here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import LayerLabError
from engine.jobs.loaded import load_graph
from engine.model.session import Session
from engine.progress import Job, Progress, in_thread

__all__ = ["SessionSnapshot", "write_report_job"]

logger = logging.getLogger(__name__)

#: The Session attributes a snapshot carries besides the model (what the report reads).
_FIELDS = ("evaluator_path", "evaluator_trusted", "machine", "plan", "profile", "sensitivity", "route",
           "baseline", "current", "trials", "calibration", "notes", "shape_notes", "path")


@dataclass(frozen=True)
class SessionSnapshot:
    """A session as of one moment, to send to the worker: its model by path, shapes and sha256, and its fields."""

    model_path: str
    input_shapes: dict[str, tuple[int, ...]]
    sha256: str
    fields: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, session: Session) -> "SessionSnapshot":
        """The snapshot of ``session``, which needs a model file and its loaded graph.

        Cheap: the session's setters replace a field's value and never change it in place, so the
        snapshot shares the values (no copy of the tables) and still keeps this moment."""
        if session.graph is None or session.model_path is None:
            raise LayerLabError("the session has no model file loaded")
        values = {name: getattr(session, name) for name in _FIELDS}
        return cls(str(session.model_path), {k: tuple(v) for k, v in session.input_shapes.items()},
                   session.graph.sha256, values)

    def session(self, graph: Any) -> Session:
        """A Session holding the snapshot's fields and ``graph`` (which must be of the snapshot's model)."""
        if getattr(graph, "sha256", None) != self.sha256:
            raise LayerLabError(f"{self.model_path}: the model file changed since it was opened; reopen it to "
                                "report on it")
        session = Session()
        session.model_path, session.input_shapes, session.graph = Path(self.model_path), dict(self.input_shapes), graph
        for name, value in self.fields.items():
            setattr(session, name, value)
        return session


def write_report_job(snapshot: SessionSnapshot, out_path: str | Path) -> Job[str]:
    """Write the report of ``snapshot`` to ``out_path`` (HTML or PDF by its suffix, atomically); returns the path."""
    from engine.report.write import check_report_path, render_report, save_report

    out = check_report_path(out_path)  # a bad name is said before any work
    yield Progress(0, 2, "loading the model")
    session = snapshot.session(load_graph(snapshot.model_path, snapshot.input_shapes))
    yield Progress(1, 2, f"drawing {out.name}")
    data = yield from in_thread(lambda: render_report(session, out), f"drawing {out.name}")
    save_report(out, data)
    yield Progress(2, 2, f"saved {out.name}")
    return str(out)
