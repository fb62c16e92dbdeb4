"""The Docker packaging matches the binaries we build (no Docker engine needed).

- Every shared library `conduitd` and `conduit-cli` load (ldd) belongs to a Debian
  package that the Dockerfile's runtime stage installs: named in its `apt-get
  install` (required for the libraries the binaries link directly), pulled in by
  apt as a dependency of a named package (followed through this host's dpkg
  database: the image is Debian 12 too), or part of every Debian base image.
- docker-compose.yml: the default peer conduitd connects to is a service of the
  file, that service is a BSV node configured so conduitd's requests are
  answered, the HTTP API is published, and the healthcheck (run here for real
  against a daemon) tracks whether conduitd is alive and its loop is moving.
"""
import os
import re
import shlex
import shutil
import signal
import subprocess
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BINARIES = ("src/daemon/conduitd", "src/daemon/conduit-cli")

# In every Debian 12 image, debian:12-slim included: essential packages and
# what apt (present in every image) depends on. A runtime stage need not name them.
BASE_IMAGE_PACKAGES = {
    "libc6", "libgcc-s1", "libstdc++6", "zlib1g", "libzstd1", "liblzma5", "libbz2-1.0",
    "libselinux1", "libpcre2-8-0", "libacl1", "libattr1", "libcrypt1", "libtinfo6",
    "libmd0", "libgmp10",
}


# ---------------------------------------------------------------- Dockerfile

def dockerfile_stages(path):
    """Returns [(from_line, [instruction, ...])]: continuation lines joined,
    comments dropped."""
    stages, cur = [], None
    logical = ""
    for raw in open(path).read().splitlines():
        line = raw.strip()
        if not logical and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        logical += line
        if re.match(r"FROM\s", logical, re.I):
            cur = (logical, [])
            stages.append(cur)
        elif cur is not None:
            cur[1].append(logical)
        logical = ""
    return stages


def apt_installed_by(instructions):
    """Package names given to `apt-get install` / `apt install` in RUN lines."""
    pkgs = []
    for ins in instructions:
        if not re.match(r"RUN\s", ins, re.I):
            continue
        for cmd in re.split(r"&&|\|\||;|\|", ins[3:]):
            words = shlex.split(cmd)
            if len(words) < 2 or os.path.basename(words[0]) not in ("apt-get", "apt"):
                continue
            if "install" not in words:
                continue
            pkgs += [w for w in words[words.index("install") + 1:]
                     if not w.startswith("-") and "=" not in w]
    return pkgs


def runtime_packages():
    stages = dockerfile_stages(os.path.join(ROOT, "Dockerfile"))
    assert stages, "no FROM in the Dockerfile"
    return set(apt_installed_by(stages[-1][1]))  # the last stage is the image


# ---------------------------------------------------------------- dpkg

def ldd(path):
    """{soname: resolved path} of every library the binary loads."""
    out = subprocess.run(["ldd", path], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, check=True).stdout
    libs = {}
    for line in out.splitlines():
        line = line.strip()
        assert "not found" not in line, f"{path}: {line}"
        m = re.match(r"(\S+) => (/\S+)", line) or re.match(r"((/\S+))", line)
        if m:
            libs[os.path.basename(m.group(1))] = m.group(2)
    return libs


def needed(path):
    """The DT_NEEDED sonames: the libraries the binary links directly."""
    out = subprocess.run(["readelf", "-d", path], stdout=subprocess.PIPE, text=True,
                         check=True).stdout
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)


def owner(path):
    """The package that ships path; tries the /usr-merged spellings."""
    real = os.path.realpath(path)
    cands = []
    for p in (path, real):
        cands += [p, p[4:] if p.startswith("/usr/") else "/usr" + p]
    for c in cands:
        r = subprocess.run(["dpkg-query", "-S", c], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True)
        if r.returncode == 0:
            return r.stdout.split(":")[0].strip()
    raise AssertionError(f"no Debian package ships {path} (dpkg-query -S)")


def depends(pkg):
    """Packages apt installs with pkg (Depends + Pre-Depends, first alternative),
    as recorded for the copy installed here; [] if it is not installed."""
    r = subprocess.run(["dpkg-query", "-W", "-f", "${Depends}, ${Pre-Depends}", pkg],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    if r.returncode != 0:
        return []
    out = []
    for clause in r.stdout.split(","):
        first = clause.split("|")[0].strip()
        if first:
            out.append(re.split(r"[\s:(]", first)[0])
    return out


def closure(pkgs):
    seen, todo = set(), list(pkgs)
    while todo:
        p = todo.pop()
        if p not in seen:
            seen.add(p)
            todo += depends(p)
    return seen


@pytest.fixture(scope="module")
def binaries(build_dir):
    if shutil.which("dpkg-query") is None or shutil.which("ldd") is None:
        pytest.skip("needs Debian's dpkg-query and ldd")
    paths = [os.path.join(build_dir, b) for b in BINARIES]
    for p in paths:
        assert os.access(p, os.X_OK), f"{p} not built"
    return paths


def test_dockerfile_parser_reads_the_runtime_stage():
    stages = dockerfile_stages(os.path.join(ROOT, "Dockerfile"))
    assert len(stages) == 2 and " AS build" in stages[0][0]
    pkgs = runtime_packages()
    assert "libpq5" in pkgs and "build-essential" not in pkgs, pkgs


def test_runtime_stage_installs_every_library_package(binaries):
    explicit = runtime_packages()
    installed = closure(explicit) | BASE_IMAGE_PACKAGES
    missing, not_named = {}, {}
    for b in binaries:
        libs = ldd(b)
        direct = set(needed(b))
        for soname, path in libs.items():
            pkg = owner(path)
            if pkg not in installed:
                missing.setdefault(pkg, set()).add(f"{os.path.basename(b)}: {soname}")
            if soname in direct and pkg not in explicit | BASE_IMAGE_PACKAGES:
                not_named.setdefault(pkg, set()).add(f"{os.path.basename(b)}: {soname}")
    assert not missing, ("the Dockerfile's runtime stage does not install "
                         f"(add to its apt-get install): {missing}")
    assert not not_named, ("libraries the binaries link directly come from packages "
                           f"the runtime stage should name itself: {not_named}")


# ---------------------------------------------------------------- docker-compose

def compose():
    yaml = pytest.importorskip("yaml")  # Debian's python3-yaml (./dev deps)
    with open(os.path.join(ROOT, "docker-compose.yml")) as f:
        return yaml.safe_load(f)


def interpolate(s):
    """The value compose uses when no variable is set: ${VAR:-default} -> default."""
    return re.sub(r"\$\{\w+:?-([^}]*)\}", r"\1", s)


def words(cmd):
    return [interpolate(w) for w in (shlex.split(cmd) if isinstance(cmd, str) else cmd)]


def flag(args, name):
    """Value of --name V / --name=V (also with _ for -) in args, else None."""
    names = {name, name.replace("-", "_")}
    for i, a in enumerate(args):
        k, eq, v = a.partition("=")
        if k in names:
            return v if eq else args[i + 1]
    return None


def test_compose_default_peer_is_a_configured_bsv_node():
    svc = compose()["services"]
    args = words(svc["conduitd"]["command"])
    peer = flag(args, "--connect")
    assert peer, "conduitd's command has no --connect"
    host, _, port = peer.rpartition(":")
    assert host in svc, f"default peer {peer}: no service {host!r} in docker-compose.yml"
    node = svc[host]
    assert node["image"].startswith("bitcoinsv/bitcoin-sv")
    assert node.get("profiles"), f"{host} should be opt-in (a compose profile)"
    nargs = words(node["command"])
    assert "-listen=1" in nargs and f"-port={port}" in nargs, nargs
    # the node must answer conduitd's `mempool` (and getheaders during its IBD)
    assert any(a.startswith("-whitelist=") for a in nargs) or \
        "-rejectmempoolrequest=0" in nargs, nargs
    assert any(v.split(":")[1] == "/data" for v in node.get("volumes", [])), \
        "the node's datadir (/data) should be a volume"


def test_compose_publishes_http_and_keeps_the_datadir():
    svc = compose()["services"]["conduitd"]
    args = words(svc["command"])
    listen = flag(args, "--http-listen")
    assert listen, "conduitd's command does not turn the HTTP API on (--http-listen)"
    port = listen.rpartition(":")[2]
    published = [str(p) for p in svc.get("ports", [])]
    assert any(p.endswith(":" + port) for p in published), (listen, published)
    assert any(v.split(":")[1] == "/var/lib/conduitd" for v in svc["volumes"])


def test_compose_profile_config_validates():
    dc = shutil.which("docker-compose")
    if dc is None:
        pytest.skip("docker-compose not installed")
    node = [n for n, s in compose()["services"].items() if s.get("profiles")]
    assert node
    r = subprocess.run([dc, "-f", os.path.join(ROOT, "docker-compose.yml"), "--profile",
                        compose()["services"][node[0]]["profiles"][0], "config", "--services"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120,
                       cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert set(r.stdout.split()) >= {"postgres", "conduitd", node[0]}, r.stdout


def run_healthcheck(test, build_dir, datadir):
    """Runs compose's healthcheck `test` here: conduit-cli from the build, the
    container's data directory replaced by datadir. Returns the exit status."""
    if test[0] == "CMD-SHELL":
        argv = ["/bin/sh", "-c", test[1]]
    else:
        assert test[0] == "CMD", test
        argv = list(test[1:])
    argv = [a.replace("/var/lib/conduitd", datadir) for a in argv]
    env = dict(os.environ, PATH=os.path.join(build_dir, "src/daemon") + ":" + os.environ["PATH"])
    return subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          timeout=30).returncode


def wait_health(test, build_dir, datadir, want_ok, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (run_healthcheck(test, build_dir, datadir) == 0) == want_ok:
            return
        time.sleep(0.5)
    raise AssertionError(f"healthcheck never became {'healthy' if want_ok else 'unhealthy'}")


def test_compose_healthcheck_tracks_the_daemon(build_dir, tmp_path):
    hc = compose()["services"]["conduitd"].get("healthcheck")
    assert hc and hc.get("test"), "conduitd has no healthcheck"
    test = hc["test"]
    assert "conduit-cli status" in " ".join(test)
    datadir = str(tmp_path / "data")
    assert run_healthcheck(test, build_dir, datadir) != 0  # never ran: unhealthy
    d = subprocess.Popen([os.path.join(build_dir, "src/daemon/conduitd"), "--regtest",
                          "--no-index", "--datadir", datadir, "--connect", "127.0.0.1:1",
                          "--ring-size", "64M", "--status-interval", "1"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         stdin=subprocess.DEVNULL)
    try:
        wait_health(test, build_dir, datadir, want_ok=True)
        # a stuck event loop (status file no longer rewritten) is unhealthy too
        d.send_signal(signal.SIGSTOP)
        wait_health(test, build_dir, datadir, want_ok=False)
        d.send_signal(signal.SIGCONT)
        wait_health(test, build_dir, datadir, want_ok=True)
        d.terminate()
        assert d.wait(60) == 0
        assert run_healthcheck(test, build_dir, datadir) != 0  # stopped: unhealthy
    finally:
        if d.poll() is None:  # a failed assertion: stop it cleanly (its ring is unlinked)
            d.send_signal(signal.SIGCONT)
            d.terminate()
            try:
                d.wait(60)
            except subprocess.TimeoutExpired:
                d.kill()
                d.wait()
