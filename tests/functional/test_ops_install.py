"""Issue 17: `meson install` lays out a product an operator can run.

A DESTDIR install of the release build holds the binaries, libconduit-p2p,
the systemd unit with this prefix's paths, the sample config (as the live
file only if none exists), the docs and the three man pages; the installed
unit passes `systemd-analyze verify` (which also runs `man` for its
Documentation= pages) against the installed binary; each man page renders
without a groff warning; every option of `conduitd --help` is documented in
conduitd.conf(5) and conduitd(8), every conduit-cli command in conduit-cli(1).
"""
import os
import pathlib
import re
import shutil
import subprocess

import pytest


@pytest.fixture(scope="module")
def inst(build_dir, tmp_path_factory):
    dest = tmp_path_factory.mktemp("destdir")
    r = subprocess.run(["meson", "install", "-C", build_dir, "--destdir", str(dest),
                        "--no-rebuild", "--quiet"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    units = list(dest.rglob("conduitd.service"))
    assert len(units) == 1, units
    text = units[0].read_text()
    exe = re.search(r"^ExecStart=(\S+)", text, re.M).group(1)
    prefix = pathlib.PurePath(exe).parent.parent  # <prefix>/bin/conduitd
    return {"dest": dest, "unit": units[0], "unit_text": text, "prefix": str(prefix)}


def under(inst, path):
    return pathlib.Path(str(inst["dest"]) + str(path))


def test_layout(inst):
    dest, prefix = inst["dest"], inst["prefix"]
    files = {str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file() or p.is_symlink()}
    p = prefix.lstrip("/")
    for want in (f"{p}/bin/conduitd", f"{p}/bin/conduit-cli", f"{p}/include/conduit_p2p.h",
                 f"{p}/share/man/man8/conduitd.8", f"{p}/share/man/man5/conduitd.conf.5",
                 f"{p}/share/man/man1/conduit-cli.1", f"{p}/share/doc/conduitd/OPERATIONS.md",
                 f"{p}/share/doc/conduitd/QUERIES.md", f"{p}/share/doc/conduitd/README.md",
                 f"{p}/share/doc/conduitd/conduitd.conf.sample",
                 f"{p}/share/doc/conduitd/roles.sql", f"{p}/share/doc/conduitd/openapi.json",
                 f"{p}/share/doc/conduitd/grafana-conduitd.json",
                 f"{p}/lib/systemd/system/conduitd.service"):
        assert want in files, (want, sorted(files))
    names = {pathlib.PurePath(f).name for f in files}
    for lib in ("libconduit-p2p.so", "libconduit-p2p.so.0", "libconduit-p2p.a",
                "conduit-p2p.pc"):
        assert lib in names
    confs = [f for f in files if f.endswith("etc/conduitd/conduitd.conf")]
    assert len(confs) == 1, confs


def test_unit_paths_come_from_the_prefix(inst):
    text, prefix = inst["unit_text"], inst["prefix"]
    assert "@" not in re.sub(r"SystemCallFilter=.*", "", text), "unsubstituted @VAR@"
    assert re.search(r"^ExecStart=%s/bin/conduitd --conf (\S+)/conduitd/conduitd.conf" %
                     re.escape(prefix), text, re.M)
    conf = re.search(r"--conf (\S+)", text).group(1)
    assert under(inst, conf).is_file(), "the unit's --conf is not installed"
    for doc in re.findall(r"file://(\S+)", text):
        assert under(inst, doc).is_file(), f"Documentation= names {doc}, not installed"


def test_systemd_analyze_verify_installed_unit(inst, tmp_path):
    sa = shutil.which("systemd-analyze")
    if sa is None:
        pytest.skip("systemd-analyze not installed")
    text, prefix = inst["unit_text"], inst["prefix"]
    for needle in ("Type=notify", "RestartPreventExitStatus=2", "NoNewPrivileges=yes",
                   "ProtectSystem=strict", "ReadWritePaths=/var/lib/conduitd",
                   "PrivateTmp=yes", "ProtectHome=yes", "User=conduitd", "Restart=on-failure",
                   "WatchdogSec=", "Documentation=man:conduitd(8)"):
        assert needle in text, needle
    exe = f"{prefix}/bin/conduitd"
    installed_exe = str(under(inst, exe))
    assert os.access(installed_exe, os.X_OK)
    # verify resolves ExecStart= on this host's root and runs `man` for each
    # man: page of Documentation=: point both into the DESTDIR tree
    env = dict(os.environ, MANPATH=str(under(inst, f"{prefix}/share/man")))
    unit = tmp_path / "conduitd.service"
    unit.write_text(text.replace(exe, installed_exe))
    r = subprocess.run([sa, "verify", str(unit)], stdout=subprocess.PIPE, env=env,
                       stderr=subprocess.STDOUT, text=True, timeout=120, cwd=str(tmp_path))
    assert r.returncode == 0, r.stdout
    # verify really reads it: a missing binary, a missing man page fail
    bad = tmp_path / "broken.service"
    bad.write_text(text.replace(exe, str(tmp_path / "no-such-binary")))
    r = subprocess.run([sa, "verify", str(bad)], stdout=subprocess.PIPE, env=env,
                       stderr=subprocess.STDOUT, text=True, timeout=120, cwd=str(tmp_path))
    assert r.returncode != 0
    r = subprocess.run([sa, "verify", str(unit)], stdout=subprocess.PIPE,
                       env=dict(env, MANPATH=str(tmp_path)), stderr=subprocess.STDOUT,
                       text=True, timeout=120, cwd=str(tmp_path))
    assert r.returncode != 0 and "man conduitd(8)" in r.stdout, r.stdout


def render(page):
    """The page rendered by man -l as plain text (no hyphenation or
    justification, so words and flags stay whole)."""
    env = dict(os.environ, MANWIDTH="200", MAN_KEEP_FORMATTING="", LANG="C.UTF-8")
    r = subprocess.run(["man", "--nh", "--nj", "-l", str(page)], capture_output=True, text=True,
                       env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    # strip overstrike bold/underline if any
    return re.sub(r".\x08", "", r.stdout)


@pytest.mark.parametrize("name", ["man8/conduitd.8", "man5/conduitd.conf.5",
                                  "man1/conduit-cli.1"])
def test_man_pages_render_cleanly(inst, name):
    if shutil.which("man") is None or shutil.which("groff") is None:
        pytest.skip("man/groff not installed")
    page = under(inst, f"{inst['prefix']}/share/man/{name}")
    r = subprocess.run(["groff", "-man", "-ww", "-z", str(page)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    text = render(page)
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "FILES", "SEE ALSO"):
        assert re.search(r"^%s$" % section, text, re.M), (section, text[:2000])


def test_man_pages_cover_every_option_and_command(inst, build_dir):
    if shutil.which("man") is None:
        pytest.skip("man not installed")
    man = under(inst, f"{inst['prefix']}/share/man")
    r = subprocess.run([os.path.join(build_dir, "src/daemon/conduitd"), "--help"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0
    # the table's options (with a default) are config keys and flags; every
    # other flag --help names (--conf, --print-config, ...) is a flag only
    options = re.findall(r"^  --([a-z_]+) \S+ +default:", r.stdout, re.M)
    assert len(options) >= 20, r.stdout
    every_flag = set(re.findall(r"(?<![\w-])(--[a-z][a-z_-]*)", r.stdout))
    assert {"--conf", "--print-config", "--regtest", "--version"} <= every_flag
    conf5 = render(man / "man5/conduitd.conf.5")
    d8 = render(man / "man8/conduitd.8")
    for name in options:
        assert re.search(r"^\s+%s = " % name, conf5, re.M), f"{name} not in conduitd.conf(5)"
        assert re.search(r"^\s+--%s " % name, d8, re.M), f"--{name} not in conduitd(8)"
    for flag in every_flag:
        if flag.startswith("--no-") or flag == "--name":  # --no-<bool>, the syntax's "--name"
            continue
        assert re.search(r"(?<![\w-])%s\b" % re.escape(flag), d8), f"{flag} not in conduitd(8)"
    r = subprocess.run([os.path.join(build_dir, "src/daemon/conduit-cli"), "help"],
                       capture_output=True, text=True, timeout=30)
    cmds = re.findall(r"^  ([a-z-]+) ", r.stdout, re.M)
    assert "status" in cmds and len(cmds) >= 8, r.stdout
    cli1 = render(man / "man1/conduit-cli.1")
    for c in cmds:
        assert re.search(r"^\s+%s\b" % re.escape(c), cli1, re.M), f"{c} not in conduit-cli(1)"


def test_reinstall_keeps_an_edited_config(inst, build_dir):
    conf = next(inst["dest"].rglob("etc/conduitd/conduitd.conf"))
    sample = next(inst["dest"].rglob("conduitd.conf.sample"))
    assert conf.read_text() == sample.read_text()
    conf.write_text("regtest = 1\n")
    r = subprocess.run(["meson", "install", "-C", build_dir, "--destdir", str(inst["dest"]),
                        "--no-rebuild", "--quiet"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert conf.read_text() == "regtest = 1\n"


def test_docker_build_context_has_every_file_the_build_reads(build_dir):
    """Every file of this tree that meson compiles, generates from, runs or
    installs lies under something the Dockerfile's build stage COPYs (the
    image builds with `meson install` too). Failed before: scripts/ (the
    static library's mkstatic.sh) was not copied; docs/ and README.md, which
    the install now needs, would not have been either."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    text = ""
    for what in ("--targets", "--installed", "--buildsystem-files"):
        r = subprocess.run(["meson", "introspect", build_dir, what], capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        text += r.stdout
    text += open(os.path.join(root, "conf", "meson.build")).read().replace(
        "meson.project_source_root() / 'scripts'", f'"{root}/scripts')
    used = set()
    for m in re.finditer(re.escape(root) + r"/([^/\"\s]+)", text):
        top = m.group(1)
        if not top.startswith(os.path.basename(build_dir)) and not top.startswith("build"):
            used.add(top)
    # paths that meson.build files name relative to their directory
    for mb in pathlib.Path(root).rglob("meson.build"):
        if "build" in mb.relative_to(root).parts[0]:
            continue
        for rel in re.findall(r"'((?:\.\./)+[^']+)'", mb.read_text()):
            p = os.path.normpath(os.path.join(mb.parent, rel))
            used.add(os.path.relpath(p, root).split(os.sep)[0])
    assert {"src", "sql", "docs", "scripts", "README.md"} <= used, used
    dockerfile = open(os.path.join(root, "Dockerfile")).read()
    build_stage = dockerfile.split("FROM ")[1]
    copied = set()
    for line in re.findall(r"^COPY\s+(.+)$", build_stage, re.M):
        words = line.split()
        copied |= {w.rstrip("/") for w in words[:-1] if not w.startswith("--")}
    # the image configures with -Dtests=disabled: tests/ is never read there
    assert "-Dtests=disabled" in build_stage
    used.discard("tests")
    missing = {u for u in used if u not in copied and os.path.exists(os.path.join(root, u))}
    assert not missing, f"the Docker build stage does not COPY {sorted(missing)}"
