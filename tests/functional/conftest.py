"""Shared pytest fixtures for the functional tests.

Fixtures:
  pg          a fresh PostgreSQL server (tests/pgserver.py) for one test
  pg_module   one server shared by a test module
  build_dir   the meson build directory holding conduitd / conduit-cli
  shared_data ../shared/data
"""

import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, ROOT)

from pgserver import PgServer  # noqa: E402

try:  # fixtures of the simulated node, if present
    from simnode_fixtures import *  # noqa: F401,F403,E402
except ImportError:
    pass


@pytest.fixture
def pg():
    srv = PgServer().start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def pg_module():
    srv = PgServer().start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def build_dir():
    d = os.environ.get("CD_BUILD_DIR", os.path.join(ROOT, "build"))
    return os.path.abspath(d)


@pytest.fixture(scope="session")
def shared_data():
    return os.environ.get("CD_SHARED_DATA",
                          os.path.abspath(os.path.join(ROOT, "..", "shared", "data")))
