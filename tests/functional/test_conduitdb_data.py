"""ConduitDB's published test expectations, checked against the real regtest chains.

No daemon: this only checks the data in tests/functional/data/conduitdb/ (transcribed from
ConduitDB's tests_functional/, see the README.md there) against the blocks of
../shared/data/regtest/blockchain_116_7c9cd2 (pre-reorg) and blockchain_118_0ebc17 (post-reorg).
The tests that replay these expectations against conduitd's HTTP API (issue 16) load the same
JSON files.
"""

import json
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data", "conduitdb")
sys.path.insert(0, DATA)

import check_expectations as ce  # noqa: E402


@pytest.fixture(scope="module")
def checker(shared_data):
    if not os.path.isdir(os.path.join(shared_data, "regtest", ce.PRE_CHAIN)):
        pytest.skip("no %s/regtest" % shared_data)
    return ce.Checker(shared_data).run()


def test_every_expectation_holds_except_the_known_discrepancies(checker):
    new = {k: v for k, v in checker.failures.items() if k not in ce.KNOWN_DISCREPANCIES}
    assert not new, "\n".join("%s: %s" % kv for kv in sorted(new.items()))


def test_known_discrepancies_are_still_there(checker):
    gone = sorted(set(ce.KNOWN_DISCREPANCIES) - set(checker.failures))
    assert not gone, "fixed or no longer checked; update KNOWN_DISCREPANCIES and README.md: %s" % gone


def test_checks_cover_every_expectation(checker):
    pre = json.load(open(os.path.join(DATA, "pre_reorg_data.json")))
    post = json.load(open(os.path.join(DATA, "post_reorg_data.json")))
    n_proofs = sum(len(pre[t]) + len(post[t]) for t in pre if t.startswith("MERKLE_PROOFS_"))
    assert n_proofs == 56
    assert len(pre["TRANSACTIONS"]) == 7
    # 7 checks per proof, 3 per raw tx, 4 per outpoint (2 chains), 6 per tip-filter key
    # (2 chains), the restoration, tip and data-README checks.
    assert checker.passed + len(checker.failures) >= 7 * n_proofs + 3 * 7 + 4 * 19 + 6 * 5


def test_the_checker_catches_a_wrong_proof(shared_data, tmp_path, monkeypatch):
    """the checks are not vacuous: a proof with one node changed fails"""
    for name in os.listdir(DATA):
        if name.endswith(".json"):
            data = json.load(open(os.path.join(DATA, name)))
            if name == "post_reorg_data.json":
                proof = data["MERKLE_PROOFS_TARGET_AS_HASH"][
                    "d53a9ebfac748561132e49254c42dbe518080c2a5956822d5d3914d47324e842"]
                proof["nodes"][0] = "00" * 32
            json.dump(data, open(tmp_path / name, "w"))
    monkeypatch.setattr(ce, "HERE", str(tmp_path))
    c = ce.Checker(shared_data).run()
    assert "proof:post:MERKLE_PROOFS_TARGET_AS_HASH:d53a9ebf:verifies" in c.failures
    assert "proof:post:MERKLE_PROOFS_TARGET_AS_HASH:d53a9ebf:nodes" in c.failures
