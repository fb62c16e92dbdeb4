"""Issue 17: HTTP hygiene of the API server, through a real daemon.

- HEAD answers the GET's headers with its Content-Length and no body, so two
  HEADs on one keep-alive connection work (before: the body followed the
  headers without a length, and the second response was garbled);
- CORS: http_cors_origins lists the origins a browser page may read from;
  OPTIONS preflights are answered; other origins get no CORS header;
- a query parameter the route does not declare is a 400 with code
  unknown_parameter (before: ?format=bump-like typos were ignored, 200);
- every error has a stable machine-readable code;
- /v1/openapi.json serves docs/openapi.json (the unit test tests/unit/api
  checks it against the route table).

The daemon runs with index = off: the routes that need no database answer,
the others say index_off, which is what these rules need.
"""
import http.client
import json
import re
import os
import socket
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from daemon_util import Daemon  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(HERE))
TXID = "d53a9ebfac748561132e49254c42dbe518080c2a5956822d5d3914d47324e842"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


@pytest.fixture(scope="module")
def port(build_dir, tmp_path_factory):
    d = Daemon(build_dir, str(tmp_path_factory.mktemp("hyg") / "d"),
               ["--regtest", "--no-conf", "--no-index", "--connect", f"127.0.0.1:{free_port()}",
                "--http-listen", "127.0.0.1:0",
                "--http-cors-origins", "https://app.example, https://other.example:8443"])
    d.start()
    try:
        m = d.wait_for_log(r"http: API on 127\.0\.0\.1:(\d+)", timeout=30)
        d.wait_for_log(r"http: server \d+ serving", timeout=30)
        yield int(m.group(1))
    finally:
        d.stop()


def request(conn, method, path, headers=None):
    conn.request(method, path, headers=headers or {})
    r = conn.getresponse()
    return r.status, r.headers, r.read()


def test_head_twice_on_one_keepalive_connection(port):
    """Failed before: the first HEAD's body was left on the connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    st, gh, gbody = request(conn, "GET", "/v1/openapi.json")
    assert st == 200 and len(gbody) == int(gh["Content-Length"]) > 1000
    for _ in range(2):
        st, h, body = request(conn, "HEAD", "/v1/openapi.json")
        assert st == 200 and body == b""
        assert h["Content-Length"] == gh["Content-Length"]
        assert h["Content-Type"] == "application/json"
    # errors too: a HEAD of a 404 has the error's length and no body
    st, h, body = request(conn, "HEAD", "/v1/nothing")
    assert st == 404 and body == b"" and int(h["Content-Length"]) > 0
    # and the connection still serves a GET correctly afterwards
    st, h, body = request(conn, "GET", "/v1/nothing")
    assert st == 404 and len(body) == int(h["Content-Length"])
    assert json.loads(body)["code"] == "unknown_endpoint"
    # the same connection was used throughout
    assert conn.sock is not None
    conn.close()


def test_head_raw_bytes_have_no_body(port):
    """The wire itself: after a HEAD's headers, the next bytes are the next
    response's status line."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall(b"HEAD /v1/status HTTP/1.1\r\nHost: x\r\n\r\n"
              b"HEAD /v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    parts = data.split(b"\r\n\r\n")
    assert parts[0].startswith(b"HTTP/1.1 ") and parts[1].startswith(b"HTTP/1.1 "), data
    assert parts[2] == b"", data


def test_cors(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    st, h, _ = request(conn, "GET", "/v1/openapi.json", {"Origin": "https://app.example"})
    assert st == 200
    assert h["Access-Control-Allow-Origin"] == "https://app.example"
    assert "Origin" in h["Vary"]
    st, h, _ = request(conn, "GET", "/v1/openapi.json", {"Origin": "https://evil.example"})
    assert st == 200 and "Access-Control-Allow-Origin" not in h
    st, h, _ = request(conn, "GET", "/v1/openapi.json")
    assert "Access-Control-Allow-Origin" not in h
    # preflight
    st, h, body = request(conn, "OPTIONS", "/v1/tx/" + TXID,
                          {"Origin": "https://other.example:8443",
                           "Access-Control-Request-Method": "GET",
                           "Access-Control-Request-Headers": "accept"})
    assert st == 204 and body == b""
    assert "Content-Length" not in h  # RFC 9110 15.3.5: none on a 204
    assert h["Access-Control-Allow-Origin"] == "https://other.example:8443"
    assert "GET" in h["Access-Control-Allow-Methods"]
    assert "accept" in h["Access-Control-Allow-Headers"].lower()
    assert h["Allow"] == "GET, HEAD, OPTIONS"
    st, h, body = request(conn, "OPTIONS", "/v1/tip", {"Origin": "https://evil.example"})
    assert st == 204 and "Access-Control-Allow-Methods" not in h
    st, h, body = request(conn, "OPTIONS", "/v1/nothing", {"Origin": "https://app.example"})
    assert st == 404 and json.loads(body)["code"] == "unknown_endpoint"
    conn.close()


@pytest.mark.parametrize("path,code", [
    ("/v1/tx/" + TXID + "?fromat=raw", "unknown_parameter"),   # a typo is not ignored
    ("/v1/tx/" + TXID + "?format=hex&bump=1", "unknown_parameter"),
    ("/v1/status?verbose=1", "unknown_parameter"),
    ("/v1/tx/" + TXID + "/proof?format=bump", "unknown_parameter"),
    ("/v1/tx/" + TXID + "?format=hex&format=raw", "bad_parameter"),
])
def test_unknown_or_repeated_parameters_are_400(port, path, code):
    """Failed before: answered as if the parameter were absent."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    st, h, body = request(conn, "GET", path)
    doc = json.loads(body)
    assert st == 400, (st, doc)
    assert doc["code"] == code and doc["error"]
    conn.close()


def test_error_codes(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    cases = [("GET", "/v1/tip", 503, "index_off"),
             ("GET", "/v1/tx/" + TXID + "?format=json", 503, "index_off"),
             ("GET", "/v1/block/xyz/header", 400, "bad_request"),
             ("GET", "/v1/nothing", 404, "unknown_endpoint"),
             ("POST", "/v1/tip", 405, "method_not_allowed")]
    for method, path, st_want, code in cases:
        st, h, body = request(conn, method, path)
        doc = json.loads(body)
        assert (st, doc["code"]) == (st_want, code), (path, st, doc)
        assert set(doc) == {"error", "code"}
    # every code the server sends is one the OpenAPI document lists
    spec = json.load(open(os.path.join(ROOT, "docs", "openapi.json")))
    listed = set(spec["components"]["schemas"]["Error"]["properties"]["code"]["enum"])
    assert {c[3] for c in cases} <= listed
    src = ""
    for f in ("cd_http_server.c", "cd_http_routes.c"):
        src += open(os.path.join(ROOT, "src", "api", f)).read()
    used = set(re.findall(r'cd_http_reply_error_code\(\s*req,\s*\d+,\s*"([a-z_]+)"', src))
    used |= set(re.findall(r'return "([a-z_]+)";', src))
    assert used and used <= listed, used - listed
    conn.close()


def test_openapi_served(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    st, h, body = request(conn, "GET", "/v1/openapi.json")
    assert st == 200 and h["Content-Type"] == "application/json"
    assert body == open(os.path.join(ROOT, "docs", "openapi.json"), "rb").read()
    doc = json.loads(body)
    assert doc["openapi"].startswith("3.")
    assert "/v1/tx/{txid}" in doc["paths"]
    conn.close()


def resolve(doc, ref):
    assert ref.startswith("#/"), ref
    node = doc
    for part in ref[2:].split("/"):
        assert part in node, f"unresolved $ref {ref}"
        node = node[part]
    return node


def test_openapi_document_is_well_formed():
    """The structural rules of OpenAPI 3.0 that matter to a client generator
    (no validator package in Debian 12, so checked here): version, info,
    every path parameter declared once as a required path parameter, every
    declared path parameter in the template, parameters with a schema,
    responses with a 2xx, every $ref resolvable."""
    doc = json.load(open(os.path.join(ROOT, "docs", "openapi.json")))
    assert re.fullmatch(r"3\.[01]\.\d+", doc["openapi"])  # 3.1: nullable as a type list
    assert doc["info"]["title"] and doc["info"]["version"]
    text = json.dumps(doc)
    for ref in re.findall(r'"\$ref": "([^"]+)"', text):
        resolve(doc, ref)
    for path, item in doc["paths"].items():
        assert path.startswith("/") and "//" not in path, path
        templ = re.findall(r"\{([^}]+)\}", path)
        assert len(templ) == len(set(templ)), path
        for method, op in item.items():
            assert method in ("get", "head", "options", "post", "put", "delete", "patch"), method
            params = [resolve(doc, p["$ref"]) if "$ref" in p else p
                      for p in op.get("parameters", [])]
            in_path = [p["name"] for p in params if p["in"] == "path"]
            assert sorted(in_path) == sorted(templ), (path, in_path, templ)
            for p in params:
                assert p["in"] in ("path", "query", "header", "cookie"), p
                assert "schema" in p and p.get("description"), (path, p["name"])
                if p["in"] == "path":
                    assert p.get("required") is True, (path, p["name"])
            codes = list(op["responses"])
            # a websocket upgrade succeeds with 101 (GET /v1/ws)
            assert any(c.startswith("2") or c == "101" for c in codes), path
            for c, resp in op["responses"].items():
                resp = resolve(doc, resp["$ref"]) if "$ref" in resp else resp
                assert resp.get("description"), (path, c)


def test_error_replies_match_the_error_schema(port):
    doc = json.load(open(os.path.join(ROOT, "docs", "openapi.json")))
    schema = doc["components"]["schemas"]["Error"]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for path in ("/v1/nothing", "/v1/tip", "/v1/status?x=1", "/v1/block/zz/header"):
        st, h, body = request(conn, "GET", path)
        err = json.loads(body)
        assert st >= 400 and set(schema["required"]) <= set(err) <= set(schema["properties"])
        assert err["code"] in schema["properties"]["code"]["enum"]
        assert isinstance(err["error"], str)
    conn.close()
