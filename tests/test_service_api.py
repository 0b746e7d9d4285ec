"""The service end to end through the Flask test client, a real Redis and a real Celery worker."""

from __future__ import annotations

import io
import json
import time
from typing import Any
from urllib.parse import quote

import numpy as np
import pytest

MODEL_SPEC: dict[str, Any] = {
    "inputs": {"x": {"shape": [1, 1, 40, 40]}},
    "model": {"input": "x", "layers": [{"type": "conv2d", "in_channels": 1, "out_channels": 1, "kernel_size": 3},
                                       {"type": "relu"}], "loss": {"type": "mean"}},
}


def test_chain_rule_through_the_service(api: Any, chain_spec: dict[str, Any]) -> None:
    r = api.client.post("/v1/jobs", json=chain_spec)
    assert r.status_code == 202
    body = r.get_json()
    assert r.headers["Location"] == body["links"]["self"] == f"/v1/jobs/{body['id']}"
    job = api.wait(body["id"])
    assert job["status"] == "succeeded", job
    assert job["attempts"] == 1 and job["created_at"] <= job["started_at"] <= job["finished_at"]
    assert job["progress"] == {"step": "done", "fraction": 1.0}
    nodes = job["result"]["nodes"]
    assert (nodes["x"]["value"]["data"], nodes["x"]["grad"]["data"]) == (2, 2569)
    assert (nodes["fx"]["value"]["data"], nodes["fx"]["grad"]["data"]) == (11, 367)
    assert (nodes["gx"]["value"]["data"], nodes["gx"]["grad"]["data"]) == (1377, 1)
    assert "torch/grad/x" in job["manifest"]["stored"]

    r = api.client.get(f"/v1/jobs/{body['id']}/nodes/fx?field=grad")
    assert r.status_code == 200
    assert r.get_json() == {"name": "fx", "engine": "torch", "field": "grad", "shape": [], "dtype": "float32", "data": 367.0}
    r = api.client.get(f"/v1/jobs/{body['id']}/nodes/x?field=grad&engine=reference&format=npy")
    assert r.status_code == 200 and r.mimetype == "application/octet-stream"
    assert float(np.load(io.BytesIO(r.data), allow_pickle=False)) == 2569.0


def test_conv_example_tensors_and_graph(api: Any, conv_spec: dict[str, Any]) -> None:
    job_id = api.submit(conv_spec)
    job = api.wait(job_id)
    assert job["status"] == "succeeded", job
    assert job["result"]["nodes"]["loss"]["value"]["data"] == pytest.approx(5.1207, abs=1e-4)
    w_grad = [[1.7992, 2.2671], [1.7966, 2.4002]]

    r = api.client.get(f"/v1/jobs/{job_id}/nodes/w?field=grad", headers={"Accept": "application/octet-stream"})
    assert r.status_code == 200 and r.mimetype == "application/octet-stream"
    a = np.load(io.BytesIO(r.data), allow_pickle=False)
    assert a.shape == (1, 1, 2, 2) and a.dtype == np.float32
    np.testing.assert_allclose(a[0, 0], w_grad, atol=1e-4)

    r = api.client.get(f"/v1/jobs/{job_id}/nodes/w?field=grad&format=json")
    got = r.get_json()
    assert (got["shape"], got["dtype"], got["engine"]) == ([1, 1, 2, 2], "float32", "torch")
    np.testing.assert_allclose(np.array(got["data"])[0, 0], w_grad, atol=1e-4)

    r = api.client.get(f"/v1/jobs/{job_id}/graph")
    assert r.status_code == 200 and r.mimetype == "image/svg+xml"
    text = r.get_data(as_text=True)
    assert text.startswith("<?xml") or "<svg" in text
    r = api.client.get(f"/v1/jobs/{job_id}/graph?format=dot")
    assert r.status_code == 200 and "digraph" in r.get_data(as_text=True)
    r = api.client.get(f"/v1/jobs/{job_id}/graph?format=json")
    assert {n["name"] for n in r.get_json()["nodes"]} >= {"x", "w", "output", "loss"}
    assert api.client.get(f"/v1/jobs/{job_id}/graph?format=png").status_code == 422


def test_graph_without_graphviz_is_503_naming_the_fix(api: Any, chain_spec: dict[str, Any], tmp_path: Any,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    job_id = api.submit(chain_spec)
    assert api.wait(job_id)["status"] == "succeeded"
    monkeypatch.setenv("PATH", str(tmp_path))  # no `dot` on it
    r = api.client.get(f"/v1/jobs/{job_id}/graph?format=svg")
    assert r.status_code == 503 and "apt-get install graphviz" in r.get_json()["detail"], r.get_data(as_text=True)
    assert api.client.get(f"/v1/jobs/{job_id}/graph?format=dot").status_code == 200
    assert api.client.get(f"/v1/jobs/{job_id}/graph?format=json").status_code == 200


def test_node_names_with_hash_at_and_dot(api: Any) -> None:
    prog = ("import torch\nx = torch.tensor([1.0, 2.0], requires_grad=True)\ny = x * 2\n"
            "y = y.sigmoid() + torch.exp(x)\nl = y.sum()\nl.backward()\n")
    job_id = api.submit({"program": prog})
    job = api.wait(job_id)
    assert job["status"] == "succeeded", job
    odd = [n for n in job["result"]["nodes"] if "#" in n or "@" in n]
    assert odd
    for name in odd:
        r = api.client.get(f"/v1/jobs/{job_id}/nodes/{quote(name, safe='')}?field=grad")
        assert r.status_code == 200, (name, r.get_json())
        assert r.get_json()["name"] == name
    r = api.client.get(f"/v1/jobs/{job_id}/nodes/nope?field=grad")
    assert r.status_code == 404 and "no node or parameter named 'nope'" in r.get_json()["detail"]
    r = api.client.get(f"/v1/jobs/{job_id}/nodes/x?engine=numeric&field=grad")
    assert r.status_code == 404 and "did not run" in r.get_json()["detail"]


def test_keep_list_and_byte_cap(api: Any, api_for: Any, settings_for: Any) -> None:
    job_id = api.submit({**MODEL_SPEC, "keep": ["0.weight"]})
    job = api.wait(job_id)
    assert job["status"] == "succeeded", job
    stored = job["manifest"]["stored"]
    # every small tensor is kept (its numbers are the result); of the large ones only those named in 'keep'
    assert {"torch/value/0.weight", "torch/grad/0.weight", "reference/grad/0.weight", "torch/value/loss"} <= set(stored)
    assert not [k for k, m in stored.items() if np.prod(m["shape"]) > 1024]
    r = api.client.get(f"/v1/jobs/{job_id}/nodes/0.weight?field=grad")
    assert r.status_code == 200 and r.get_json()["shape"] == [1, 1, 3, 3]
    r = api.client.get(f"/v1/jobs/{job_id}/nodes/1.relu")  # 1444 elements: summarised, and not kept
    assert r.status_code == 410 and "not kept" in r.get_json()["detail"]
    assert job["result"]["nodes"]["1.relu"]["value"]["summary"]["max"] is not None
    r = api.client.get(f"/v1/jobs/{job_id}/nodes/loss")  # not kept, but small: inline in the result
    assert r.status_code == 200 and r.get_json()["shape"] == []

    capped = api_for(settings_for(max_job_bytes=5000))
    job_id = capped.submit(MODEL_SPEC)
    job = capped.wait(job_id)
    assert job["status"] == "succeeded", job
    assert job["manifest"]["nbytes"] <= 5000
    assert "cap of 5000" in job["manifest"]["not_kept"]["torch/value/1.relu"]
    r = capped.client.get(f"/v1/jobs/{job_id}/nodes/1.relu", headers={"Accept": "application/octet-stream"})
    assert r.status_code == 410 and "cap of 5000" in r.get_json()["detail"]


@pytest.mark.parametrize(
    ("spec", "loc", "node"),
    [
        ({"program": "x = 1", "dtype": "float16"}, ["dtype"], None),
        ({"program": "x = 1", "nodes": []}, [], None),
        ({"inputs": {"x": {"value": 1, "shape": [1]}}, "program": "y = x"}, ["inputs", "x"], None),
        ({"nodes": [{"name": "out", "op": "nope", "inputs": []}]}, ["nodes", 0], "out"),
        ({"program": "import torch\nx = = 1\n"}, ["program"], None),
        ({"program": "import torch\nx = torch.tensor(2.0, requires_grad=True)\ny = x * 3\n", "keep": ["x", "zz"]},
         ["keep", 1], "zz"),
    ],
)
def test_bad_specs_are_422_and_create_no_job(client: Any, rdb: Any, spec: dict[str, Any], loc: list[Any],
                                             node: str | None) -> None:
    before = set(rdb.scan_iter(match="gradtrace:{*"))
    r = client.post("/v1/jobs", json=spec)
    assert r.status_code == 422, r.get_data(as_text=True)
    detail = r.get_json()["detail"]
    assert any(d["loc"][: len(loc)] == loc for d in detail), detail
    if node:
        assert detail[0]["node"] == node
    assert "program" not in spec or spec["program"] not in r.get_data(as_text=True)
    assert not set(rdb.scan_iter(match="gradtrace:{*")) - before


def test_not_json_is_422(client: Any) -> None:
    r = client.post("/v1/jobs", data="not json", content_type="application/json")
    assert r.status_code == 422 and r.is_json


def test_body_too_large_is_413(api_for: Any, settings_for: Any) -> None:
    small = api_for(settings_for(max_body_bytes=2048))
    spec = {"inputs": {"x": [0.5] * 1000}, "program": "y = x * 2"}
    r = small.client.post("/v1/jobs", json=spec)
    assert r.status_code == 413 and "2048" in r.get_json()["detail"]


def test_idempotency_key(api: Any, chain_spec: dict[str, Any], rdb: Any) -> None:
    key = f"k-{time.time_ns()}"
    a = api.client.post("/v1/jobs", json=chain_spec, headers={"Idempotency-Key": key})
    b = api.client.post("/v1/jobs", json=chain_spec, headers={"Idempotency-Key": key})
    assert a.status_code == b.status_code == 202
    assert a.get_json()["id"] == b.get_json()["id"]
    c = api.client.post("/v1/jobs", json={**chain_spec, "dtype": "float64"}, headers={"Idempotency-Key": key})
    assert c.status_code == 409
    assert api.wait(a.get_json()["id"])["status"] == "succeeded"
    d = api.client.post("/v1/jobs", json=chain_spec)
    assert d.get_json()["id"] != a.get_json()["id"]


def test_unknown_ids_are_404(client: Any) -> None:
    for job_id in ("0" * 32, "not-an-id", "..%2F.."):
        for method, url in (("get", ""), ("get", "/graph"), ("get", "/nodes/x"), ("delete", "")):
            r = getattr(client, method)(f"/v1/jobs/{job_id}{url}")
            assert r.status_code == 404, (job_id, url, r.status_code)
            assert r.is_json
    assert client.get("/v1/nothing").status_code == 404


def test_expired_job_is_404(api_for: Any, settings_for: Any, chain_spec: dict[str, Any], rdb: Any,
                            keys_of: Any, poll: Any) -> None:
    short = api_for(settings_for(result_ttl_s=2))
    job_id = short.submit(chain_spec)
    job = short.wait(job_id, timeout=30)
    assert job["status"] == "succeeded", job
    keys = keys_of(job_id)
    assert len(keys) >= 4 and all(0 < rdb.ttl(k) <= 2 for k in keys)
    poll(lambda: short.client.get(f"/v1/jobs/{job_id}").status_code == 404, 10, "expiry")
    poll(lambda: not any(rdb.exists(k) for k in keys), 10, "every key of the job to expire")
    assert short.client.get(f"/v1/jobs/{job_id}/nodes/x").status_code == 404


def test_delete_finished_job(api: Any, chain_spec: dict[str, Any], keys_of: Any) -> None:
    job_id = api.submit(chain_spec)
    assert api.wait(job_id)["status"] == "succeeded"
    assert keys_of(job_id)
    assert api.client.delete(f"/v1/jobs/{job_id}").status_code == 204
    assert not keys_of(job_id)
    assert api.client.get(f"/v1/jobs/{job_id}").status_code == 404
    assert api.client.delete(f"/v1/jobs/{job_id}").status_code == 404


def test_openapi_docs_and_health(client: Any, worker: Any, api_for: Any, settings_for: Any) -> None:
    doc = client.get("/openapi.json").get_json()
    assert doc["openapi"].startswith("3.1")
    assert {"/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/nodes/{name}", "/v1/jobs/{job_id}/graph"} <= set(doc["paths"])
    assert "TraceSpec" in json.dumps(doc["paths"]["/v1/jobs"]["post"])
    page = client.get("/docs").get_data(as_text=True)
    assert "openapi.json" in page and "http://" not in page and "https://" not in page
    assert client.get("/healthz").status_code == 200
    r = client.get("/readyz")
    assert r.status_code == 200 and r.get_json()["workers"] >= 1

    r = api_for(settings_for(broker_db=9)).client.get("/readyz")  # nobody consumes db 9
    assert r.status_code == 503 and "no Celery worker" in " ".join(r.get_json()["missing"])
    from api.app import create_app
    from shared.settings import Settings

    dead = Settings(redis_url="redis://127.0.0.1:1/0")
    r = create_app(dead).test_client().get("/readyz")
    assert r.status_code == 503 and r.get_json()["redis"] is False
    assert create_app(dead).test_client().get("/v1/jobs/" + "0" * 32).status_code == 503


def test_long_poll_answers_when_the_job_finishes(api: Any, app: Any, chain_spec: dict[str, Any], slow: Any) -> None:
    import threading

    job_id = api.submit(chain_spec)
    t0 = time.monotonic()
    r = api.client.get(f"/v1/jobs/{job_id}?wait=30")
    assert r.status_code == 200 and time.monotonic() - t0 < 10
    job = r.get_json()
    assert job["status"] == "succeeded" and job["result"]["nodes"]["x"]["grad"]["data"] == 2569
    assert api.client.get(f"/v1/jobs/{job_id}?wait=31").status_code == 422

    slow_id = api.submit(slow(60000))  # long enough to be running when the wait runs out; the cancel stops it
    t0 = time.monotonic()
    r = api.client.get(f"/v1/jobs/{slow_id}?wait=0.5")
    assert r.get_json()["status"] in ("queued", "running") and 0.45 <= time.monotonic() - t0 < 5

    answer: dict[str, Any] = {}

    def waiter() -> None:
        t = time.monotonic()
        answer["status"] = app.test_client().get(f"/v1/jobs/{slow_id}?wait=25").status_code
        answer["s"] = time.monotonic() - t

    th = threading.Thread(target=waiter)
    th.start()
    time.sleep(0.3)
    assert api.client.delete(f"/v1/jobs/{slow_id}").status_code == 202
    th.join(30)
    assert answer["status"] == 200 and answer["s"] < 5  # a cancelled job's waiters return at once, with its status
    assert api.job(slow_id)["status"] == "cancelled"


def test_long_polls_leave_threads_for_other_requests(api_for: Any, settings_for: Any, slow: Any) -> None:
    import threading

    few = api_for(settings_for(api_threads=3))  # one thread of three may wait
    job_id = few.submit(slow(60000))
    first: dict[str, Any] = {}
    waiter = threading.Thread(target=lambda: first.update(r=few.client.get(f"/v1/jobs/{job_id}?wait=25")))
    waiter.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    r = few.client.get(f"/v1/jobs/{job_id}?wait=20")  # no slot left: answered at once, not after 20 s
    assert r.status_code == 200 and r.get_json()["status"] in ("queued", "running") and time.monotonic() - t0 < 2
    assert few.client.delete(f"/v1/jobs/{job_id}").status_code == 202
    waiter.join(30)
    assert first["r"].status_code == 200 and first["r"].get_json()["status"] == "cancelled"


def _strict(raw: bytes) -> Any:
    """JSON that a strict parser accepts: no bare NaN or Infinity tokens."""
    def refuse(token: str) -> Any:
        raise AssertionError(f"non-standard JSON token {token}")

    return json.loads(raw, parse_constant=refuse)


def test_non_finite_values_round_trip_over_http(api: Any) -> None:
    """log(0) is -inf: the result keeps it (as '-Infinity'), says where it started, and .npy has the float."""
    program = ("x = torch.tensor([1.0, 0.0, 2.0], requires_grad=True)\ny = torch.log(x)\n"
               "z = (y * w).sum()\n")
    spec = {"program": program, "inputs": {"w": {"value": [2.0, "NaN", "Infinity"], "requires_grad": False}}}
    job_id = api.submit(spec)
    raw = api.client.get(f"/v1/jobs/{job_id}?wait=30").data
    job = _strict(raw)
    assert job["status"] == "succeeded", job
    nodes = job["result"]["nodes"]
    assert nodes["y"]["value"]["data"][:2] == [0.0, "-Infinity"]
    assert nodes["w"]["value"]["data"][1:] == ["NaN", "Infinity"]
    assert nodes["z"]["value"]["data"] == "NaN"
    first = [a for a in job["result"]["anomalies"] if a["phase"] == "forward"]
    assert [(a["node"], a["index"]) for a in first] == [("w", [1]), ("y", [1])]
    assert first[1]["op"] == "log" and first[1]["inputs"] == {"x": 0.0} and first[1]["value"] == "-Infinity"
    r = api.client.get(f"/v1/jobs/{job_id}/nodes/y")
    assert _strict(r.data)["data"][1] == "-Infinity"
    r = api.client.get(f"/v1/jobs/{job_id}/nodes/y?format=npy")
    assert np.load(io.BytesIO(r.data), allow_pickle=False)[1] == -np.inf
    from shared.result import TraceResult

    result = TraceResult.model_validate(job["result"])  # the client model reads the strings back as floats
    assert result.nodes["y"].value.data[1] == -np.inf and np.isnan(result.nodes["z"].value.data)
    graph = api.client.get(f"/v1/jobs/{job_id}/graph?format=json")
    assert graph.status_code == 200 and _strict(graph.data)["output"] == "z"


def test_a_large_job_is_paged_and_drawn_around_a_node(api: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Over GRADTRACE_RESULT_FULL_NODES (2000) nodes: the job view carries the summary, the listing pages through
    the nodes with filters and search, and the graph comes as the neighbourhood of a node."""
    nodes = [{"name": "y1", "op": "sin", "inputs": ["x"]}]
    nodes += [{"name": f"y{k}", "op": "mul" if k % 2 else "sin", "inputs": [f"y{k - 1}"] + ([1.001] if k % 2 else [])}
              for k in range(2, 2501)]
    job_id = api.submit({"inputs": {"x": 0.5}, "nodes": nodes})
    job = _strict(api.client.get(f"/v1/jobs/{job_id}?wait=30").data)
    assert job["status"] == "succeeded", job
    assert job["result"] is None and job["summary"]["counts"] == {"nodes": 2501, "leaves": 1, "parameters": 0, "edges": 2500}
    assert job["summary"]["comparison"]["verdict"] == "agree" and job["links"]["node_list"] == f"/v1/jobs/{job_id}/nodes"

    page = _strict(api.client.get(f"/v1/jobs/{job_id}/nodes?offset=10&limit=5").data)
    assert page["total"] == 2501 and [n["name"] for n in page["items"]] == ["y10", "y11", "y12", "y13", "y14"]
    item = page["items"][0]
    assert item["op"] == "sin" and item["grad_fn"] == "SinBackward0" and isinstance(item["value"]["data"], float)
    assert set(item["engines"]) == {"torch", "reference"} and item["error"]["torch~reference"]["grad"]["ok"]
    leaves = _strict(api.client.get(f"/v1/jobs/{job_id}/nodes?filter=leaves").data)
    assert [n["name"] for n in leaves["items"]] == ["x"] and leaves["items"][0]["grad"]["data"] != 0
    assert _strict(api.client.get(f"/v1/jobs/{job_id}/nodes?filter=disagree").data)["total"] == 0
    found = _strict(api.client.get(f"/v1/jobs/{job_id}/nodes?q=Y249&limit=100").data)
    assert [n["name"] for n in found["items"]] == ["y249"] + [f"y249{k}" for k in range(10)]
    assert api.client.get(f"/v1/jobs/{job_id}/nodes?filter=bogus").status_code == 422
    exact = _strict(api.client.get(f"/v1/jobs/{job_id}/nodes?name=y249").data)
    assert [n["name"] for n in exact["items"]] == ["y249"] and exact["total"] == 1
    assert _strict(api.client.get(f"/v1/jobs/{job_id}/nodes?name=nope").data)["total"] == 0
    lean = _strict(api.client.get(f"/v1/jobs/{job_id}?manifest=false").data)
    assert lean["manifest"] is None and lean["summary"]["counts"]["nodes"] == 2501
    # over GRADTRACE_RESULT_FULL_NODES the manifest (a line per stored tensor) comes only when asked for
    assert job["manifest"] is None
    asked = _strict(api.client.get(f"/v1/jobs/{job_id}?manifest=true&result=false").data)
    assert asked["result"] is None and len(asked["manifest"]["stored"]) >= 2 * 2501
    assert asked["manifest"]["stored"]["torch/grad/y7"]["shape"] == [] and asked["manifest"]["nbytes"] > 0
    import services.store

    monkeypatch.setattr(services.store, "MANIFEST_MAX_TENSORS", 1000)  # a 1M-node job's index is read no more
    r = api.client.get(f"/v1/jobs/{job_id}?manifest=true&result=false")
    assert r.status_code == 413 and "node listing" in r.get_json()["detail"]

    near = _strict(api.client.get(f"/v1/jobs/{job_id}/graph?format=json&around=y100&depth=1").data)
    assert near["total"] == 2501 and {n["name"] for n in near["nodes"]} == {"y99", "y100", "y101"}
    assert {(e["src"], e["dst"]) for e in near["edges"]} == {("y99", "y100"), ("y100", "y101")}
    assert {n["name"]: n["hidden"] for n in near["nodes"]} == {"y99": 1, "y100": 0, "y101": 1}
    top = _strict(api.client.get(f"/v1/jobs/{job_id}/graph?format=json").data)  # too big: around the output
    assert {n["name"] for n in top["nodes"]} == {"y2500", "y2499", "y2498"}
    assert api.client.get(f"/v1/jobs/{job_id}/graph?around=y100&depth=1").mimetype == "image/svg+xml"
    r = api.client.get(f"/v1/jobs/{job_id}/graph?format=svg&depth=50&max_nodes=1000")
    assert r.status_code == 200
    r = api.client.get(f"/v1/jobs/{job_id}/graph?format=dot&depth=1000&max_nodes=2000")
    assert r.status_code == 413 and "format=json" in r.get_json()["detail"]
    assert api.client.get(f"/v1/jobs/{job_id}/graph?format=json&around=nope").status_code == 404
    assert api.client.get(f"/v1/jobs/{job_id}/nodes/y7?field=grad").status_code == 200


def test_the_job_list_shows_the_newest_jobs(api: Any, chain_spec: dict[str, Any]) -> None:
    first = api.submit(chain_spec)
    api.wait(first)
    bad = api.submit({"inputs": {"x": {"value": [0, 2], "dtype": "int64"}, "w": {"shape": [3, 2]}},
                      "nodes": [{"name": "e", "op": "embedding", "inputs": ["x", "w"]}, {"name": "s", "op": "sum", "inputs": ["e"]}]})
    api.wait(bad)
    items = api.client.get("/v1/jobs?limit=5").get_json()["items"]
    ids = [i["id"] for i in items]
    assert ids.index(bad) < ids.index(first)  # newest first
    mine = {i["id"]: i for i in items}
    assert mine[first]["status"] == "succeeded" and mine[first]["verdict"] == "agree" and mine[first]["nodes"] == 9
    assert mine[first]["progress"] == {"step": "done", "fraction": 1.0} and mine[first]["attempts"] == 1
    api.client.delete(f"/v1/jobs/{first}")
    assert first not in [i["id"] for i in api.client.get("/v1/jobs").get_json()["items"]]
    assert api.client.get("/v1/jobs?limit=0").status_code == 422


def test_a_node_by_another_name_the_program_gave_it(api: Any) -> None:
    # `loss = total`, a loop's last `p`, and `model.encoder.weight` of a module also held as `enc`: the result's
    # aliases, and the node endpoint takes either name
    program = ("import torch\nimport torch.nn as nn\ntorch.manual_seed(0)\n\n\nclass Wrap(nn.Module):\n"
               "    def __init__(self, enc):\n        super().__init__()\n        self.encoder = enc\n\n"
               "    def forward(self, x):\n        return self.encoder(x)\n\n\nenc = nn.Linear(3, 2)\nmodel = Wrap(enc)\n"
               "for p in model.parameters():\n    p.requires_grad_(True)\ntotal = model(torch.ones(4, 3)).pow(2).sum()\nloss = total\n"
               "loss.backward()\n")
    job = api.wait(api.submit({"program": program}))
    assert job["status"] == "succeeded", job
    aliases = job["result"]["aliases"]
    assert aliases == {"p": "enc.bias", "loss": "total", "model.encoder.weight": "enc.weight", "model.encoder.bias": "enc.bias"}
    direct = api.client.get(f"/v1/jobs/{job['id']}/nodes/enc.weight?field=grad").get_json()
    aliased = api.client.get(f"/v1/jobs/{job['id']}/nodes/model.encoder.weight?field=grad").get_json()
    assert aliased["data"] == direct["data"] and aliased["shape"] == [2, 3]
    assert api.client.get(f"/v1/jobs/{job['id']}/nodes/loss").get_json()["data"] == \
        api.client.get(f"/v1/jobs/{job['id']}/nodes/total").get_json()["data"]
    assert api.client.get(f"/v1/jobs/{job['id']}/nodes/nope").status_code == 404
