"""engine.jobs.report_job: the report written from a pickled snapshot of a session, as the worker does it."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import onnx
import pytest

from engine.errors import LayerLabError
from engine.jobs import loaded
from engine.jobs.catalogue import WRITE_REPORT, resolve
from engine.jobs.report_job import SessionSnapshot, write_report_job
from engine.progress import Cancelled, run
from engine.report.write import write_report
from tests import builders
from tests.engine.io.test_session_file import _private_cache, make_session  # noqa: F401 (autouse fixture)

_DATE = re.compile(r"<tr><th>Date</th><td>[^<]*</td></tr>")


@pytest.fixture(autouse=True)
def _fresh_loader():
    loaded.forget()  # each test's model is a new file: nothing kept from another test
    yield
    loaded.forget()


def _shipped(snapshot: SessionSnapshot) -> SessionSnapshot:
    """The snapshot as the worker process receives it."""
    return pickle.loads(pickle.dumps(snapshot))


def test_the_worker_writes_the_report_the_session_would(tmp_path: Path) -> None:
    session = make_session(tmp_path)
    session.path = tmp_path / "s.layerlab.json"
    write_report(session, tmp_path / "direct.html")
    messages = []
    written = run(write_report_job(_shipped(SessionSnapshot.of(session)), tmp_path / "job.html"),
                  on_progress=lambda p: messages.append(p.message))
    assert written == str(tmp_path / "job.html")
    direct, job = ((tmp_path / n).read_text(encoding="utf-8") for n in ("direct.html", "job.html"))
    assert _DATE.sub("", job) == _DATE.sub("", direct)  # every section, table and chart alike (the minute aside)
    assert str(session.path) in job and "first try" in job
    assert messages[0] == "loading the model" and messages[-1] == "saved job.html"
    assert resolve(WRITE_REPORT) is write_report_job


def test_the_pdf_is_written_from_the_snapshot(tmp_path: Path) -> None:
    session = make_session(tmp_path)
    run(write_report_job(_shipped(SessionSnapshot.of(session)), tmp_path / "r.pdf"))
    assert (tmp_path / "r.pdf").read_bytes().startswith(b"%PDF")


def test_the_snapshot_keeps_the_moment_it_was_taken(tmp_path: Path) -> None:
    session = make_session(tmp_path)
    snapshot = SessionSnapshot.of(session)
    trials = len(session.trials)
    session.add_trial(session.trials[0])
    session.set_notes("changed after the export was asked for")
    assert len(snapshot.fields["trials"]) == trials and snapshot.fields["notes"] == "first try"


def test_a_model_changed_on_disk_is_one_line(tmp_path: Path) -> None:
    session = make_session(tmp_path)
    snapshot = _shipped(SessionSnapshot.of(session))
    onnx.save(builders.residual_net(blocks=3), str(session.model_path))  # rewritten since the window opened it
    with pytest.raises(LayerLabError, match="model.onnx: the model file changed since it was opened") as error:
        run(write_report_job(snapshot, tmp_path / "r.html"))
    assert "\n" not in str(error.value) and not (tmp_path / "r.html").exists()


def test_a_bad_name_is_said_before_any_work(tmp_path: Path) -> None:
    snapshot = SessionSnapshot("/nowhere/model.onnx", {}, "0" * 64, {})
    with pytest.raises(LayerLabError, match=r"r\.txt: report must end in \.html or \.pdf"):
        run(write_report_job(snapshot, tmp_path / "r.txt"))
    with pytest.raises(LayerLabError, match="folder .*missing does not exist"):
        run(write_report_job(snapshot, tmp_path / "missing" / "r.pdf"))


def test_a_cancelled_export_leaves_no_file(tmp_path: Path) -> None:
    session = make_session(tmp_path)
    seen = []
    with pytest.raises(Cancelled):
        run(write_report_job(SessionSnapshot.of(session), tmp_path / "r.pdf"), on_progress=seen.append,
            should_stop=lambda: any(p.message.startswith("drawing") for p in seen))
    assert not list(tmp_path.glob("*r.pdf*"))


def test_a_session_without_a_model_cannot_be_snapshot() -> None:
    from engine.model.session import Session

    with pytest.raises(LayerLabError, match="no model file"):
        SessionSnapshot.of(Session())
