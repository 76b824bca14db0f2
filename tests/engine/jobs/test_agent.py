"""The profiling agent on 127.0.0.1: remote profile vs local, measure + fidelity, every refusal, a killed agent."""

from __future__ import annotations

import http.client
import json
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from engine.cli.main import main
from engine.errors import SettingsError
from engine.ir.graph import load_model
from engine.measure.cache import ProfileCache, cache_key
from engine.measure.profiler import ProfileOptions, profile
from engine.measure.remote import RemoteTarget, Target, TargetAuthError, TargetError
from engine.progress import run
from tests.engine.jobs.agent_helpers import AgentProcess, start_agent, write_token


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> AgentProcess:
    a = start_agent(tmp_path_factory.mktemp("agent"), "--max-upload", "2MB")
    yield a
    a.stop()


@pytest.fixture()
def remote(agent: AgentProcess) -> RemoteTarget:
    return RemoteTarget(Target.parse(agent.address, agent.token_file))


def _digits(digits_model: Path):
    return load_model(digits_model, {"input": (1, 1, 8, 8)})


def test_info_reports_the_target(remote: RemoteTarget) -> None:
    import onnxruntime as ort

    info = remote.info()
    assert info["ort"] == ort.__version__
    assert info["providers"] == ort.get_available_providers()
    assert "fp32" in info["routines"]["CPUExecutionProvider"] and info["cores"] >= 1
    assert info["limits"]["max_upload"] == 2_000_000 and info["jobs"] == ["profile", "measure", "routines"]


def test_remote_profile_matches_local(remote: RemoteTarget, digits_model: Path, tmp_path: Path) -> None:
    graph = _digits(digits_model)
    options = ProfileOptions(repeats=10, profile_runs=10, cache_dir=tmp_path / "client")
    got = run(remote.profile_job(graph, options))
    here = profile(graph, ProfileOptions(repeats=10, profile_runs=10, cache_dir=tmp_path / "local"))
    assert [(lp.name, lp.op, lp.tunable) for lp in got.layers] == [(lp.name, lp.op, lp.tunable) for lp in here.layers]
    assert {lp.name: sorted(lp.routines) for lp in got.layers} == {lp.name: sorted(lp.routines) for lp in here.layers}
    assert {lp.name: sorted(lp.unsupported) for lp in got.layers} == {lp.name: sorted(lp.unsupported) for lp in here.layers}
    assert sorted((a.tensor, a.kind) for a in got.adapts if a.routine is None) == \
        sorted((a.tensor, a.kind) for a in here.adapts if a.routine is None)
    assert got.model_sha256 == here.model_sha256 and got.input_shapes == here.input_shapes
    assert got.complete and got.target["address"] == remote.target.address.removeprefix("http://")
    # Same machine, measured minutes apart by another process: times agree within noise only.
    assert 1 / 3 < got.end_to_end.median / here.end_to_end.median < 3
    assert 1 / 3 < sum(lp.ms for lp in got.layers) / sum(lp.ms for lp in here.layers) < 3
    # Cached per target: the second ask reads the client's cache (one entry, keyed by the target).
    cache = ProfileCache(tmp_path / "client")
    assert cache.count("remote-profile") == 1 and cache.count("variant") == 0
    cache.close()
    again = run(remote.profile_job(graph, options))
    assert again.end_to_end == got.end_to_end and again.target == got.target


def test_measure_latency_and_fidelity(remote: RemoteTarget, digits_model: Path, digits_eval: Path) -> None:
    from engine.evaluate.npz import fidelity_scores
    from engine.measure.timing import make_session
    from engine.measure.variants import build_variant, random_feeds

    graph = _digits(digits_model)
    int8, _ = build_variant(graph, "int8", random_feeds(graph))
    with np.load(digits_eval) as z:
        samples = {"input:input": z["input:input"][:40]}
    data = run(remote.fidelity_job({"fp32": graph.model, "int8": int8}, random_feeds(graph), samples, "fp32", repeats=5))
    assert set(data["latency"]) == {"fp32", "int8"} and all(s["median"] > 0 for s in data["latency"].values())
    assert data["fidelity"]["fp32"]["cosine"] == pytest.approx(1.0) and data["fidelity"]["fp32"]["top1_agreement"] == 1.0
    runs = {n: [make_session(m, 1, n).run(None, {"input": samples["input:input"][i:i + 1]})[:1] for i in range(40)]
            for n, m in {"fp32": graph.model, "int8": int8}.items()}
    local = fidelity_scores(runs["int8"], runs["fp32"])
    assert data["fidelity"]["int8"]["cosine"] == pytest.approx(local["cosine"], abs=1e-6)
    assert data["fidelity"]["int8"]["top1_agreement"] == pytest.approx(local["top1_agreement"])


def test_wrong_token_exits_2_with_one_line(agent: AgentProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = write_token(tmp_path / "bad.token")
    assert main(["profile", "digits", "--target", agent.address, "--token-file", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "refused the token" in err and str(bad) in err
    with pytest.raises(TargetAuthError):
        RemoteTarget(Target.parse(agent.address, bad)).info()
    assert "wrong token" in agent.log_text()  # the agent logs the attempt


def test_token_file_open_to_others_is_refused(agent: AgentProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    loose = tmp_path / "loose.token"
    shutil.copy(agent.token_file, loose)
    loose.chmod(0o644)
    assert main(["profile", "digits", "--target", agent.address, "--token-file", str(loose)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "open to group or others (mode 644)" in err
    assert main(["agent", "--listen", "127.0.0.1:0", "--token-file", str(loose)]) == 2  # the agent refuses it too
    assert "open to group or others" in capsys.readouterr().err


def test_oversize_upload_is_refused(agent: AgentProcess, remote: RemoteTarget) -> None:
    big = {"model:x": b"\0" * 2_100_000}
    with pytest.raises(TargetError, match="over the agent's limit of 2000000 bytes"):
        run(remote._job("measure", {}, big))
    # A client that does not check first: refused from Content-Length, before the body is read.
    status, body = _raw(agent, "POST", "/v1/jobs", headers={"Content-Length": str(10**9)})
    assert status == 413 and "over the agent's limit" in body["error"]


def test_unknown_job_kind_and_other_requests_are_refused(agent: AgentProcess, remote: RemoteTarget) -> None:
    with pytest.raises(TargetError, match=r"unknown job kind 'train' \(this agent runs: profile, measure, routines\)"):
        run(remote._job("train", {}, {}))
    status, body = _raw(agent, "GET", "/etc/passwd")
    assert status == 404 and "the agent serves GET /v1/info, POST /v1/jobs" in body["error"]
    status, body = _raw(agent, "PUT", "/v1/jobs")
    assert status == 405
    status, body = _raw(agent, "POST", "/v1/jobs", body=b"not an envelope")
    assert status == 400 and "bad magic" in body["error"]
    with pytest.raises(TargetError, match=r"setting threads=0: expected an integer from 1 to 512"):
        run(remote._job("measure", {"threads": 0}, {"model:a": b"x", "feeds": b"y"}))


def test_external_data_model_is_refused(remote: RemoteTarget, digits_model: Path) -> None:
    import onnx

    model = onnx.load(str(digits_model))
    init = model.graph.initializer[0]
    init.data_location = onnx.TensorProto.EXTERNAL
    init.ClearField("raw_data")
    init.external_data.add(key="location", value="../../etc/passwd")
    from engine.measure.wire import npz_bytes

    feeds = npz_bytes({"input": np.zeros((1, 1, 8, 8), np.float32)})
    with pytest.raises(TargetError, match="external data are refused"):
        run(remote._job("profile", {}, {"model": model.SerializeToString(), "feeds": feeds}))


def test_killed_agent_mid_job_is_a_clear_error(tmp_path: Path, digits_model: Path) -> None:
    agent = start_agent(tmp_path / "doomed")
    remote = RemoteTarget(Target.parse(agent.address, agent.token_file))
    local = ProfileCache(tmp_path / "client")
    local.put("variant:keep", {"ms": 1.0})
    local.close()
    # The most timed runs an agent allows, killed at its first message: on a quiet machine digits' default
    # profile ends (its result already in the socket buffer) before a kill at the second message lands.
    job = remote.profile_job(_digits(digits_model), ProfileOptions(cache_dir=tmp_path / "client", repeats=1000))
    try:
        seen = 0
        with pytest.raises(TargetError, match="closed the connection mid-profile") as err:
            for p in job:
                seen += p.message.startswith(f"[{remote.target.label}]")
                if seen == 1:
                    agent.proc.kill()
                    agent.proc.wait(10)
        assert "nothing local was changed" in str(err.value) and len(str(err.value).splitlines()) == 1
    finally:
        agent.stop()
    cache = ProfileCache(tmp_path / "client")
    assert cache.get("variant:keep") == {"ms": 1.0} and cache.count("remote-profile") == 0
    cache.close()


def test_tls_agent(tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("no openssl to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    agent = start_agent(tmp_path / "tls", "--cert", str(cert), "--key", str(key))
    try:
        assert agent.url.startswith("https://")
        ok = RemoteTarget(Target.parse(agent.url, agent.token_file, cafile=cert))
        assert ok.info()["protocol"] == 1
        with pytest.raises(TargetError, match="TLS failed"):
            RemoteTarget(Target.parse(agent.url, agent.token_file)).info()  # unknown CA: refused
    finally:
        agent.stop()


def test_named_targets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.measure.targets import load_targets, resolve_target

    monkeypatch.setenv("LAYERLAB_CONFIG", str(tmp_path))
    (tmp_path / "targets.json").write_text(json.dumps(
        {"targets": {"box": {"address": "https://10.0.0.7:8765", "token_file": "box.token", "cafile": "ca.pem"}}}))
    t = resolve_target("box")
    assert (t.host, t.port, t.tls, t.name) == ("10.0.0.7", 8765, True, "box")
    assert t.token_file == tmp_path / "box.token" and t.cafile == tmp_path / "ca.pem"
    assert resolve_target("127.0.0.1:9", "tok").port == 9
    with pytest.raises(SettingsError, match="known: box"):
        resolve_target("nobox")
    with pytest.raises(SettingsError, match="--token-file"):
        resolve_target("127.0.0.1:9")
    (tmp_path / "targets.json").write_text('{"targets": {"x": {}}}')
    with pytest.raises(SettingsError, match="targets.json: malformed targets config"):
        load_targets()


def test_remote_cache_key_differs_per_target() -> None:
    a = cache_key("remote-profile", target={"address": "a:1", "cpu": "x"}, model="m")
    b = cache_key("remote-profile", target={"address": "b:1", "cpu": "x"}, model="m")
    assert a != b


def _raw(agent: AgentProcess, method: str, path: str, body: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict]:
    host, port = agent.address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.putrequest(method, path)
        conn.putheader("Authorization", f"Bearer {agent.token_file.read_text().strip()}")
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"{}")
    finally:
        conn.close()


def test_catalogue_profiles_on_a_named_target(agent: AgentProcess, digits_model: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.jobs.catalogue import profile_model_job

    monkeypatch.setenv("LAYERLAB_CONFIG", str(tmp_path))
    (tmp_path / "targets.json").write_text(json.dumps(
        {"targets": {"box": {"address": agent.address, "token_file": str(agent.token_file)}}}))
    options = ProfileOptions(repeats=5, profile_runs=5, routines=("fp32",), adapts=False, cache_dir=tmp_path / "c")
    got = run(profile_model_job(digits_model, {"input": (1, 1, 8, 8)}, options, target="box"))
    assert got.target["name"] == "box" and got.target["address"] == agent.address
    assert {lp.name for lp in got.layers if lp.tunable} == {"/conv1/Conv", "/conv2/Conv", "/res/conv_a/Conv",
                                                             "/res/conv_b/Conv", "/conv3/Conv", "/fc1/Gemm", "/fc2/Gemm"}


def test_unavailable_execution_provider_is_refused(remote: RemoteTarget, digits_model: Path) -> None:
    from engine.errors import LayerLabError
    from engine.measure.timing import make_session

    graph = _digits(digits_model)
    from engine.measure.variants import random_feeds

    with pytest.raises(TargetError, match="execution provider 'NoSuchExecutionProvider' is not available on this target"):
        run(remote.latency_job({"m": graph.model}, random_feeds(graph), 1, 5, provider="NoSuchExecutionProvider"))
    with pytest.raises(LayerLabError, match="execution provider NoSuchExecutionProvider is not available here"):
        make_session(graph.model, 1, "m", provider="NoSuchExecutionProvider")


def test_busy_agent_refuses_a_second_job_at_once(remote: RemoteTarget, digits_model: Path, tmp_path: Path) -> None:
    from engine.measure.variants import random_feeds

    graph = _digits(digits_model)
    first = remote.profile_job(graph, ProfileOptions(repeats=400, cache_dir=tmp_path / "c", use_cache=False))
    for p in first:  # until the agent reports: the job is running there
        if p.message.startswith(f"[{remote.target.label}]"):
            break
    try:
        with pytest.raises(TargetError, match=r"busy: 1 job\(s\) running, the agent's limit"):
            run(remote.latency_job({"m": graph.model}, random_feeds(graph), 1, 5))
    finally:
        first.close()  # cancel: the connection closes and the agent stops the job


def test_back_to_back_jobs_find_the_slot_free(remote: RemoteTarget, digits_model: Path) -> None:
    """The agent frees a job's slot before it sends the result, so a client that sends its next job on
    reading one is never told 'busy' (it was, now and then, under load: the slot was freed after the send)."""
    from engine.measure.variants import random_feeds

    graph = _digits(digits_model)
    feeds = random_feeds(graph)
    deadline = time.monotonic() + 30
    while True:  # a job another test cancelled runs on until the agent sees its client gone
        try:
            run(remote.latency_job({"m": graph.model}, feeds, 1, 3))
            break
        except TargetError as exc:
            if "busy" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    for _ in range(10):  # now each job is sent the moment the previous result is read
        stats = run(remote.latency_job({"m": graph.model}, feeds, 1, 3))
        assert stats
