"""Runner label allow-lists (issue 14): labels a runner's own profile claims beyond what the
lab admin allowed for it (per runner at token creation, or per pool by a name glob) are not
granted, not synced to the provider, and reported."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from ci_app.model.allow import DEFAULT_ALLOW, grant_labels, parse_patterns, patterns_for_runner
from ci_app.model.labels import derive_labels
from ci_app.model.profile import HardwareProfile
from ci_app.providers.base import RunnerInfo

from .conftest import Server
from .test_api import PHASH, PROFILE, _beat

H100 = {
    "vendor": "nvidia",
    "index": 0,
    "uuid": "GPU-0",
    "name": "NVIDIA H100 80GB HBM3",
    "memory_bytes": 85_520_809_984,
    "compute_capability": "9.0",
    "arch": "hopper",
}


def gpu_profile() -> dict[str, Any]:
    """The 2-vCPU VM's profile claiming an H100 (what a lying or broken probe would send)."""
    doc: dict[str, Any] = copy.deepcopy(PROFILE)
    doc["gpus"] = [H100]
    doc["nvidia"] = {**doc["nvidia"], "status": "ok", "error": None, "driver_version": "550.54",
                     "cuda_driver_version": "12.4"}  # fmt: skip
    return doc


def _token(srv: Server, name: str, **body: Any) -> dict[str, Any]:
    resp = srv.client.post(f"/api/v1/admin/runners/{name}/tokens", headers=srv.admin(), json=body)
    assert resp.status_code == 201, resp.get_json()
    doc: dict[str, Any] = resp.get_json()
    return doc


def test_patterns_pure() -> None:
    assert parse_patterns("x64, gpu-mem-ge-*  GPU") == ("x64", "gpu-mem-ge-*", "gpu")
    with pytest.raises(ValueError, match="not a label"):
        parse_patterns(["ok", "bad label"])
    granted, refused = grant_labels(["x64", "gpu", "gpu-mem-ge-80g", "cpu-avx2"], ("x64", "cpu-*"))
    assert granted == ("x64", "cpu-avx2") and refused == ("gpu", "gpu-mem-ge-80g")
    pools = [("lab-gpu-*", ("gpu*",)), ("lab-*", ("x64",))]
    assert patterns_for_runner("lab-gpu-1", None, pools, DEFAULT_ALLOW) == ("gpu*", "x64")
    assert patterns_for_runner("lab-gpu-1", ("cpu-*",), pools, DEFAULT_ALLOW) == ("cpu-*",)
    assert patterns_for_runner("ci-1", None, pools, DEFAULT_ALLOW) == DEFAULT_ALLOW


def test_self_declared_gpu_is_not_believed_by_default(server: Server) -> None:
    server.fakes.runners.runners["lab-1"] = RunnerInfo(
        id="1", name="lab-1", labels=frozenset({"self-hosted", "team-ml"})
    )
    token = _token(server, "lab-1")["token"]
    claimed = derive_labels(HardwareProfile.from_dict(gpu_profile()))
    assert "gpu-nvidia" in claimed and "gpu-mem-ge-80g" in claimed
    reply = _beat(server, token, runner="lab-1", profile_hash=PHASH, profile=gpu_profile(), load={})
    doc = reply.get_json()
    assert reply.status_code == 200 and doc["ok"] is True
    assert not any(label.startswith(("gpu", "sm", "cuda")) for label in doc["labels"])
    assert "gpu-nvidia" in doc["refused"] and "allow-list" in doc["warning"]
    server.drain()
    added = {label for op, _, label in server.fakes.runners.calls if op == "add"}
    assert added and not any(label.startswith(("gpu", "sm", "cuda")) for label in added)
    (row,) = [r for r in server.store.runners.runner_rows() if r.name == "lab-1"]
    assert "gpu-nvidia" in row.refused_labels and "gpu-nvidia" not in row.labels
    listed = server.client.get("/api/v1/runners", headers=server.admin()).get_json()["runners"]
    assert "gpu-nvidia" in listed[0]["refused_labels"]
    page = server.client.get("/runners").get_data(as_text=True)
    assert "not granted by its allow-list" in page


def test_allow_list_at_token_creation_grants_the_gpu(server: Server) -> None:
    server.fakes.runners.runners["lab-gpu-1"] = RunnerInfo(
        id="2", name="lab-gpu-1", labels=frozenset()
    )
    made = _token(server, "lab-gpu-1", allow_labels=["x64", "cpu-*", "mem-ge-*", "gpu", "gpu-nvidia",
                                                        "gpu-mem-ge-*"])  # fmt: skip
    assert made["allow_labels"][-1] == "gpu-mem-ge-*"
    doc = _beat(server, made["token"], runner="lab-gpu-1", profile_hash=PHASH, profile=gpu_profile(),
                load={}).get_json()  # fmt: skip
    assert {"gpu", "gpu-nvidia", "gpu-mem-ge-80g"} <= set(doc["labels"])
    # what the list leaves out is still refused (compute capability, CUDA, model)
    assert "sm-ge-90" in doc["refused"] and "cuda-ge-12.4" in doc["refused"]
    server.drain()
    added = {label for op, _, label in server.fakes.runners.calls if op == "add"}
    assert "gpu-nvidia" in added and "sm-ge-90" not in added
    bad = server.client.post(
        "/api/v1/admin/runners/x/tokens", headers=server.admin(), json={"allow_labels": ["GPU <b>"]}
    )
    assert bad.status_code == 400


def test_pool_allow_list_by_runner_name_glob(server: Server) -> None:
    resp = server.client.put(
        "/api/v1/admin/pools/lab-gpu-*",
        headers=server.admin(),
        json={"allow_labels": ["x64", "gpu*"]},
    )
    assert resp.status_code == 200
    listed = server.client.get("/api/v1/admin/pools", headers=server.admin()).get_json()
    assert listed == {"pools": [{"pattern": "lab-gpu-*", "allow_labels": ["x64", "gpu*"]}]}
    inside = _token(server, "lab-gpu-7")["token"]
    outside = _token(server, "office-3")["token"]
    got = _beat(
        server, inside, runner="lab-gpu-7", profile_hash=PHASH, profile=gpu_profile(), load={}
    )
    assert "gpu-nvidia" in got.get_json()["labels"]
    assert "cpu-avx2" in got.get_json()["refused"]  # the pool's list replaces the default
    got = _beat(
        server, outside, runner="office-3", profile_hash=PHASH, profile=gpu_profile(), load={}
    )
    assert "gpu-nvidia" in got.get_json()["refused"]
    # revising the pool applies at the next label sync, without a new profile
    server.client.put(
        "/api/v1/admin/pools/lab-gpu-*", headers=server.admin(), json={"allow_labels": ["x64"]}
    )
    server.fakes.runners.runners["lab-gpu-7"] = RunnerInfo(
        id="7", name="lab-gpu-7", labels=frozenset()
    )
    server.drain()
    stored = server.store.runners.runner("lab-gpu-7")
    assert stored is not None and "gpu-nvidia" not in stored.labels
    assert server.client.delete(
        "/api/v1/admin/pools/lab-gpu-*", headers=server.admin()
    ).get_json() == {
        "pattern": "lab-gpu-*",
        "removed": 1,
    }
    runner_auth = {"Authorization": f"Bearer {inside}"}
    assert server.client.get("/api/v1/admin/pools", headers=runner_auth).status_code == 403


def test_cli_allow_labels_offline(tmp_path: Any) -> None:
    from tests.commands.test_serve import _cli

    db = str(tmp_path / "a.duckdb")
    made = _cli(
        "runners", "--db", db, "token", "create", "lab-gpu-1", "--allow-labels", "x64", "gpu-*"
    )
    assert made.returncode == 0, made.stderr
    assert "x64 gpu-*" in made.stderr
    bad = _cli("runners", "--db", db, "token", "create", "x", "--allow-labels", "NOT OK")
    assert bad.returncode == 2 and "not a label" in bad.stderr
    pool = _cli("runners", "--db", db, "pool", "allow", "lab-*", "x64", "cpu-*")
    assert pool.returncode == 0, pool.stderr
    listed = _cli("runners", "--db", db, "pool", "list")
    assert "lab-*" in listed.stdout and "cpu-*" in listed.stdout
    from ci_app.store import open_store

    with open_store(db) as store:
        assert store.runners.runner_allow_list("lab-gpu-1") == ("x64", "gpu-*")
    assert (
        json.loads(_cli("runners", "--db", db, "pool", "list", "--json").stdout)["pools"][0][
            "pattern"
        ]
        == "lab-*"
    )


def test_probe_logs_the_labels_it_was_refused(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    """runner_probe's own client over real HTTP: the reply names the refused labels and the
    agent says so in its log."""
    import threading

    from werkzeug.serving import make_server

    from runner_probe.heartbeat import HeartbeatClient, HeartbeatConfig

    token = _token(server, "lab-3")["token"]
    http = make_server("127.0.0.1", 0, server.app, threaded=True)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    try:
        client = HeartbeatClient(
            HeartbeatConfig(
                server=f"http://127.0.0.1:{http.server_port}", token=token, runner="lab-3"
            ),
            profile_fn=lambda: HardwareProfile.from_dict(gpu_profile()),
            load_fn=lambda p: {},
        )
        with caplog.at_level("WARNING", logger="runner_probe.heartbeat"):
            result = client.beat()
    finally:
        http.shutdown()
    assert result.ok and result.reply is not None and "gpu-nvidia" in result.reply["refused"]
    assert "does not grant" in caplog.text and "gpu-nvidia" in caplog.text
