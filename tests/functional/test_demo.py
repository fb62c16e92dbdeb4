"""The README's main command (./dev run -> scripts/demo.py) keeps working:
it indexes a generated chain and its documented queries return rows."""
import os
import re
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_demo_indexes_and_queries(build_dir):
    env = dict(os.environ, CD_BUILD_DIR=build_dir)
    p = subprocess.run(["/usr/bin/python3", os.path.join(ROOT, "scripts", "demo.py"),
                        "--blocks", "30", "--txs-per-block", "8"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, timeout=600)
    out = p.stdout.decode(errors="replace")
    assert p.returncode == 0, out[-4000:]
    assert re.search(r"indexed to height 30: \d+ transactions", out), out[-4000:]
    assert re.search(r"state:\s+synced", out), out[-4000:]
    assert re.search(r"\|\s+30\s*\n\(1 row\)", out)            # best tip at height 30
    assert "-- where is tx" in out and '"targetType": "hash"' in out  # tx + merkle proof
    assert "== done" in out
