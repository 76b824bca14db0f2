"""Every session LayerLab times or scores with stops ORT's thread spinning when a run ends.

ORT's intra-op workers otherwise spin on after a run (2^20 pauses: ~100 ms of a core under load), and
a session timed next shares the cores with them: interleaved timing measured MiniLM's int8_dynamic
route at 3.4 ms (p10 2.05) where it runs in 2.16 ms alone, and the prediction looked 36 % low.
"""

from __future__ import annotations

from engine.evaluate.evaluator import create_session
from engine.measure import timing
from tests import builders

_STOP = "session.force_spinning_stop"


def _entry(session, key: str) -> str:
    """A session's config entry; '' when it was not set (ORT raises for an unset key)."""
    try:
        return session.get_session_options().get_session_config_entry(key)
    except RuntimeError:
        return ""


def test_timing_sessions_stop_spinning_when_a_run_ends_and_still_spin_within_it() -> None:
    model = builders.gemm_mlp()
    session = timing.make_session(model, 2, "mlp")
    assert _entry(session, _STOP) == "1"
    assert _entry(session, "session.intra_op.allow_spinning") != "0"  # spinning inside a run is kept
    parts = timing.make_session(model, 2, "mlp", spin=False)  # a route's parts: no spinning at all
    assert _entry(parts, _STOP) == "1" and _entry(parts, "session.intra_op.allow_spinning") == "0"


def test_scoring_sessions_stop_spinning_too() -> None:
    # tune times fp32 right after scoring it: the scoring session's workers must not spin into that timing
    assert _entry(create_session(builders.gemm_mlp(), threads=2), _STOP) == "1"
