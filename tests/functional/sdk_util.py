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
