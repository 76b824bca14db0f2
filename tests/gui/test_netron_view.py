"""View ▸ Netron: the original model and the current variant served on localhost (no browser in tests)."""

from __future__ import annotations

import urllib.request

import pytest

from engine.model.plan import Plan

pytest.importorskip("netron")


@pytest.fixture
def opened(monkeypatch) -> list[str]:
    import gui.netron_view

    urls: list[str] = []

    class _Desktop:  # the browser must not open during tests
        @staticmethod
        def openUrl(url) -> bool:  # noqa: N802 - Qt's name
            urls.append(url.toString())
            return True

    monkeypatch.setattr(gui.netron_view, "QDesktopServices", _Desktop)
    return urls


def _get(url: str) -> tuple[int, bytes]:
    assert url.startswith("http://127.0.0.1:")  # localhost only
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.read()


def test_open_in_netron_serves_the_model_on_localhost_then_stops(window, opened) -> None:
    netron = window.netron
    netron.embedded = False  # the browser path, whatever is installed
    netron.original_action.trigger()
    url = netron.url
    assert opened == [url] and url in window.status_text.text()
    status, page = _get(url)
    assert status == 200 and b"netron" in page.lower()
    status, data = _get(f"{url}/data/{window.session.model_path.name}")
    assert status == 200 and data == window.session.model_path.read_bytes()
    netron.close()
    assert netron.url is None
    with pytest.raises(OSError):  # refused (or reset): nobody serves it any more
        _get(url)


def test_open_current_variant_builds_it_in_the_worker(window, qtbot, opened) -> None:
    import onnx

    first = window.session.graph.layers[0].name
    window.session.set_plan(Plan.from_dict({"layers": {first: {"precision": "int8"}}}))
    window.netron.embedded = False
    job = window.netron.variant_action.trigger() or window.job
    with qtbot.waitSignal(job.ended, timeout=60_000):
        pass
    assert not window.last_error and opened == [window.netron.url]
    status, data = _get(f"{window.netron.url}/data/digits.variant.onnx")
    ops = {n.op_type for n in onnx.load_from_string(data).graph.node}
    assert status == 200 and ops & {"QuantizeLinear", "QLinearConv", "ConvInteger"}
    window.netron.close()


def test_without_web_engine_the_menu_says_what_to_install(window) -> None:
    texts = [a.text() for a in window.menuBar().actions()[2].menu().actions()]  # View
    assert "Open in &Netron" in texts and "Open current &variant in Netron" in texts
    if not window.netron.embedded:
        assert any("layerlab[web]" in t for t in texts)
