"""libconduit-p2p as an installed product (issue 12): `meson install` into a
DESTDIR, then every program of examples/ built out of tree with nothing but
`cc $(pkg-config --cflags --libs conduit-p2p)`, and run against the simulated
node; the shared library's soname and exported symbols; the static library.

Run: CD_BUILD_DIR=build /usr/bin/python3 -m pytest tests/functional/test_p2p_install.py
"""
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from simnode_fixtures import SHARED, simnode_factory  # noqa: E402,F401

from tests.simnode.protocol import hexh, sha256d  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHAIN116 = SHARED / "data/regtest/blockchain_116_7c9cd2"
EXAMPLES = sorted((ROOT / "examples").glob("*.c"))


@pytest.fixture(scope="module")
def installed(build_dir, tmp_path_factory):
    """DESTDIR install of the release build: {destdir, libdir, env}."""
    dest = tmp_path_factory.mktemp("destdir")
    r = subprocess.run(["meson", "install", "-C", build_dir, "--destdir", str(dest),
                        "--no-rebuild", "--quiet"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    pcs = list(dest.rglob("conduit-p2p.pc"))
    assert len(pcs) == 1, "no conduit-p2p.pc installed: %s" % pcs
    libdir = pcs[0].parent.parent
    env = dict(os.environ)
    env["PKG_CONFIG_PATH"] = str(pcs[0].parent)
    env["PKG_CONFIG_SYSROOT_DIR"] = str(dest)
    env.pop("PKG_CONFIG_LIBDIR", None)
    return {"dest": dest, "libdir": libdir, "env": env}


def pkgconfig(inst, *args):
    r = subprocess.run(["pkg-config", *args, "conduit-p2p"], capture_output=True, text=True,
                       env=inst["env"])
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


def test_install_lays_out_the_product(installed):
    dest = installed["dest"]
    names = {p.name for p in dest.rglob("*") if p.is_file() or p.is_symlink()}
    for want in ("conduitd", "conduit-cli", "conduit_p2p.h", "libconduit-p2p.so",
                 "libconduit-p2p.so.0", "libconduit-p2p.a", "conduit-p2p.pc"):
        assert want in names, sorted(names)
    # the public header includes nothing of the tree
    hdr = next(dest.rglob("conduit_p2p.h")).read_text()
    assert re.findall(r'#include\s+"', hdr) == []
    assert set(re.findall(r"#include\s+<([^>]+)>", hdr)) <= {"stddef.h", "stdint.h"}
    assert "btc_" not in re.sub(r"/\*.*?\*/", "", hdr, flags=re.S)


def test_shared_library_soname_and_exports(installed):
    so = next(installed["libdir"].glob("libconduit-p2p.so.0.*"))
    r = subprocess.run(["readelf", "-d", str(so)], capture_output=True, text=True, check=True)
    assert re.search(r"\(SONAME\)\s+Library soname: \[libconduit-p2p\.so\.0\]", r.stdout), r.stdout
    r = subprocess.run(["nm", "-D", "--defined-only", str(so)], capture_output=True, text=True,
                       check=True)
    syms = [ln.split()[-1] for ln in r.stdout.splitlines() if ln.strip()]
    assert len(syms) > 50
    assert [s for s in syms if not s.startswith("cp2p_")] == []
    for api in ("cp2p_mgr_new", "cp2p_escape", "cp2p_header_check_pow", "cp2p_merkle_root",
                "cp2p_tsc_verify", "cp2p_bump_verify", "cp2p_mgr_broadcast_tx"):
        assert api in syms
    # the library logs through its callback, never through the daemon's logger
    r = subprocess.run(["nm", "-D", "--undefined-only", str(so)], capture_output=True,
                       text=True, check=True)
    assert "cd_log" not in r.stdout


def test_static_library_exports_only_the_api(installed):
    a = installed["libdir"] / "libconduit-p2p.a"
    r = subprocess.run(["nm", "--defined-only", "-g", str(a)], capture_output=True, text=True,
                       check=True)
    syms = [ln.split()[-1] for ln in r.stdout.splitlines()
            if ln.strip() and not ln.endswith(":") and len(ln.split()) == 3]
    assert syms and [s for s in syms if not s.startswith("cp2p_")] == []


def build_example(inst, src, out, static=False):
    cflags = pkgconfig(inst, "--cflags")
    if static:
        libs = [str(inst["libdir"] / "libconduit-p2p.a")] + [
            x for x in pkgconfig(inst, "--libs", "--static") if x != "-lconduit-p2p"]
    else:
        libs = pkgconfig(inst, "--libs")
    r = subprocess.run(["cc", "-std=c11", "-Wall", "-Wextra", "-Werror", str(src), *cflags,
                        *libs, "-o", str(out)], capture_output=True, text=True, env=inst["env"])
    assert r.returncode == 0, "%s: %s" % (src.name, r.stderr)


@pytest.mark.parametrize("src", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_builds_out_of_tree(installed, tmp_path, src):
    # a copy outside the tree: no include path of ours can help it
    copy = tmp_path / src.name
    shutil.copy(src, copy)
    build_example(installed, copy, tmp_path / src.stem)


def test_installed_example_runs_against_the_node(installed, tmp_path, simnode_factory):
    copy = tmp_path / "spv_headers.c"
    shutil.copy(ROOT / "examples/spv_headers.c", copy)
    build_example(installed, copy, tmp_path / "spv_headers")
    build_example(installed, copy, tmp_path / "spv_headers_static", static=True)
    node = simnode_factory(chain_dir=CHAIN116)
    tip = (CHAIN116 / "headers.txt").read_text().split()[-1]
    env = dict(os.environ, LD_LIBRARY_PATH=str(installed["libdir"]))
    for exe in ("spv_headers", "spv_headers_static"):
        r = subprocess.run([str(tmp_path / exe), "--regtest", "--connect",
                            "127.0.0.1:%d" % node.port], capture_output=True, text=True,
                           timeout=60, env=env)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "synced: tip height 116 %s" % tip in r.stdout
    # the dynamic one really used the installed copy
    r = subprocess.run(["ldd", str(tmp_path / "spv_headers")], capture_output=True, text=True,
                       env=env)
    assert str(installed["libdir"] / "libconduit-p2p.so.0") in r.stdout, r.stdout


def test_installed_broadcast_example(installed, tmp_path, simnode_factory):
    copy = tmp_path / "broadcast_tx.c"
    shutil.copy(ROOT / "examples/broadcast_tx.c", copy)
    build_example(installed, copy, tmp_path / "broadcast_tx")
    node = simnode_factory(generate=110, seed=5)
    tx = node.make_tx()
    env = dict(os.environ, LD_LIBRARY_PATH=str(installed["libdir"]))
    r = subprocess.run([str(tmp_path / "broadcast_tx"), "--regtest", "--connect",
                        "127.0.0.1:%d" % node.port, tx.hex()], capture_output=True, text=True,
                       timeout=60, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SEEN_ON_NETWORK " + hexh(sha256d(tx)) in r.stdout


LOG_PROG = r"""
#include <stdio.h>
#include <string.h>
#include <event2/event.h>
#include <conduit_p2p.h>

static int got;
static void sink(void *user, cp2p_log_level lvl, const char *msg)
{
    printf("callback %d %s %s\n", (int)lvl, (const char *)user, msg);
    got++;
}

int main(void)
{
    struct event_base *base = event_base_new();
    cp2p_options opt;
    cp2p_options_init(&opt, cp2p_net_by_name("regtest"));
    opt.user_agent = "/cashier:1/";   /* refused: BSV nodes ban "cash" */
    if (cp2p_mgr_new(base, &opt, NULL, NULL, NULL) != NULL)  /* to stderr */
        return 1;
    opt.log_fn = sink;
    opt.log_user = "app";
    if (cp2p_mgr_new(base, &opt, NULL, NULL, NULL) != NULL)  /* to the callback */
        return 1;
    event_base_free(base);
    return got == 1 ? 0 : 2;
}
"""


def test_library_logs_through_the_application(installed, tmp_path):
    """No line in the daemon's format: the library writes to the callback it
    is given, or (none given) 'conduit-p2p:' lines to stderr."""
    src = tmp_path / "logprog.c"
    src.write_text(LOG_PROG)
    build_example(installed, src, tmp_path / "logprog")
    env = dict(os.environ, LD_LIBRARY_PATH=str(installed["libdir"]))
    r = subprocess.run([str(tmp_path / "logprog")], capture_output=True, text=True, env=env,
                       timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.fullmatch(r"conduit-p2p: error: cp2p_mgr_new: the user agent .*\n", r.stderr), \
        r.stderr
    assert re.fullmatch(r"callback 0 app cp2p_mgr_new: the user agent .*\n", r.stdout), r.stdout
    assert "conduitd" not in r.stdout + r.stderr
