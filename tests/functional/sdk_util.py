"""Running the @bsv/sdk check scripts of tests/sdk from pytest (issue 15).

Each script prints one JSON line and exits 0 when every check passed
(tests/sdk/README.md); `run_sdk` returns that line parsed and fails the test
with it otherwise.
"""

import json
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SDK = os.path.join(ROOT, "tests", "sdk")


def run_sdk(script, *args, expect_ok=True, timeout=600):
    p = subprocess.run(["node", os.path.join(SDK, script)] + [str(a) for a in args],
                       capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    lines = p.stdout.strip().splitlines()
    assert lines, (script, p.returncode, p.stderr[-3000:])
    result = json.loads(lines[-1])
    if expect_ok:
        assert p.returncode == 0 and result.get("ok") is True, \
            (script, p.returncode, json.dumps(result)[:6000], p.stderr[-2000:])
    return result


# ---- docs/openapi.json: the HTTP API's description, validated here ----

_OPENAPI = None


def openapi():
    global _OPENAPI
    if _OPENAPI is None:
        with open(os.path.join(ROOT, "docs", "openapi.json")) as f:
            _OPENAPI = json.load(f)
    return _OPENAPI


def check_schema(name, value):
    """Validates a live answer against components.schemas[name]."""
    import jsonschema
    schema = openapi()["components"]["schemas"][name]
    jsonschema.Draft202012Validator(schema).validate(value)


def routes_in_source():
    """Every route of the route tables (cd_http_routes.c: under /v1;
    cd_http_sdk.c: full paths) and the /arc ones, with "*" as "{}"."""
    import re
    out = set()
    src = open(os.path.join(ROOT, "src", "api", "cd_http_routes.c")).read()
    table = src[src.index("routes[] = {"):]
    table = table[:table.index("};")]
    for m in re.finditer(r"\{\{([^}]*)\}", table):
        segs = [s.strip().strip('"') for s in m.group(1).split(",") if s.strip() != "NULL"]
        out.add("/v1/" + "/".join("{}" if s == "*" else s for s in segs))
    src = open(os.path.join(ROOT, "src", "api", "cd_http_sdk.c")).read()
    table = src[src.index("routes[] = {"):]
    table = table[:table.index("};")]
    for m in re.finditer(r"\{\{([^}]*)\}", table):
        segs = [s.strip().strip('"') for s in m.group(1).split(",") if s.strip() != "NULL"]
        out.add("/" + "/".join("{}" if s == "*" else s for s in segs))
    out |= {"/arc/v1/tx", "/arc/v1/txs", "/arc/v1/tx/{}"}  # cd_http_arc_dispatch
    out |= {"/v1/webhooks", "/v1/webhooks/{}"}  # cd_http_hooks_dispatch (cd_http_hooks.c)
    return out


def assert_http_survived(d):
    """Each of the HTTP server children (HTTP_PROCS = 4) was started once and
    never crashed (a crash is restarted by the supervisor: a second 'started
    http worker N'), and no sanitizer report (ASan/UBSan builds) reached the
    log."""
    import re
    log = d.log_text()
    starts = re.findall(r"started http worker (\d+)", log)
    assert sorted(starts) == ["0", "1", "2", "3"], log[-4000:]
    assert "AddressSanitizer" not in log and "runtime error:" not in log, log[-4000:]
