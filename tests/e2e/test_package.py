#!/usr/bin/env python3
"""The .deb on this machine: build it with CPack from the build tree, install it with dpkg -i, run the
installed veerd --check-config on the installed example config, check the group veer, the unit, the conffile
and `systemd-analyze verify` on the installed unit, the man pages (found by `man -w`, rendered without a groff
warning) and the bash completion (loaded by bash-completion's loader), then purge it and check that nothing of it is left.

Leaves the machine as it was: refuses to run (skips) where a veer package or files at the package's paths
exist already, and deletes the group veer afterwards if it created it. Touches no testbed, namespace or
socket, so a concurrently running suite is unaffected. Starts no service (no systemd as PID 1 here; the
postinst only talks to systemd where it runs).
"""
import grp
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

import veer_e2e as e2e
from veer_e2e import run

PACKAGE_FILES = [
    "/usr/sbin/veerd",
    "/usr/bin/veerctl",
    "/usr/lib/systemd/system/veerd.service",
    "/usr/lib/sysusers.d/veer.conf",
    "/etc/veer/veer.yaml",
    "/usr/share/man/man1/veerctl.1.gz",
    "/usr/share/man/man5/veer.yaml.5.gz",
    "/usr/share/man/man8/veerd.8.gz",
    "/usr/share/bash-completion/completions/veerctl",
    "/usr/share/veer/prometheus/veer.rules.yml",
    "/usr/share/veer/prometheus/veer.rules.test.yml",
    "/usr/share/veer/grafana/veer-dashboard.json",
]
MAN_PAGES = [p for p in PACKAGE_FILES if p.startswith("/usr/share/man/")]


def build_dir_of(binary):
    """The build tree that holds BINARY (the folder with CPackConfig.cmake above it)."""
    d = os.path.dirname(os.path.abspath(binary))
    while d != "/":
        if os.path.exists(os.path.join(d, "CPackConfig.cmake")):
            return d
        d = os.path.dirname(d)
    raise RuntimeError(f"no CPackConfig.cmake above {binary}")


def group_exists(name):
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


def package_installed():
    proc = run(["dpkg-query", "-W", "-f=${Status}", "veer"], check=False)
    return proc.returncode == 0 and "installed" in proc.stdout and "not-installed" not in proc.stdout


class TestPackage(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        e2e.require_veer(cls)
        if package_installed():
            raise unittest.SkipTest("a veer package is installed on this machine: not touching it")
        present = [p for p in PACKAGE_FILES + ["/etc/veer"] if os.path.exists(p)]
        if present:
            raise unittest.SkipTest(f"files at the package's paths exist already: {present}")
        cls.group_existed = group_exists("veer")
        cls.work = tempfile.mkdtemp(prefix="veer-e2e-deb-")
        cls.installed = False

    @classmethod
    def tearDownClass(cls):
        try:
            if package_installed():
                run(["dpkg", "--purge", "veer"], check=False, timeout=120)
            if not cls.group_existed and group_exists("veer"):
                run(["groupdel", "veer"], check=False)
        finally:
            shutil.rmtree(cls.work, ignore_errors=True)

    def test_install_check_purge(self):
        build = build_dir_of(e2e.ARGS.veerd)
        out = run(["cpack", "-G", "DEB", "--config", os.path.join(build, "CPackConfig.cmake"), "-B", self.work],
                  timeout=600)
        debs = [f for f in os.listdir(self.work) if f.endswith(".deb")]
        self.assertEqual(len(debs), 1, f"{debs}\n{out.stdout}")
        deb = os.path.join(self.work, debs[0])
        print(f"  built {debs[0]} ({os.path.getsize(deb)} bytes)", flush=True)

        fields = run(["dpkg-deb", "-f", deb, "Package", "Depends"]).stdout
        self.assertIn("Package: veer", fields)
        for lib in ("libbpf", "libsystemd0", "libyaml-cpp", "adduser"):
            self.assertIn(lib, fields, "shlibdeps/Depends")
        contents = run(["dpkg-deb", "-c", deb]).stdout
        for path in PACKAGE_FILES:
            self.assertIn("." + path, contents)

        run(["dpkg", "-i", deb], timeout=120)
        self.assertTrue(package_installed())

        # the installed binaries, their libraries resolved, on the installed example config
        check = run(["/usr/sbin/veerd", "--check-config", "/etc/veer/veer.yaml"], check=False)
        self.assertEqual(check.returncode, 0, check.stderr)
        self.assertEqual(check.stdout.strip(), "/etc/veer/veer.yaml: ok")
        self.assertIn("0.1.0", run(["/usr/sbin/veerd", "--version"]).stdout)
        self.assertEqual(run(["/usr/bin/veerctl", "--help"], check=False).returncode, 0)
        self.assertEqual(run(["/usr/bin/veerctl", "--version"]).stdout, run(["/usr/sbin/veerd", "--version"])
                         .stdout.replace("veerd", "veerctl"))

        # man pages: found by name and rendered with every groff warning on, none given
        env = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8")
        for page in MAN_PAGES:
            name, section = os.path.basename(page)[:-len(".gz")].rsplit(".", 1)
            self.assertEqual(run(["man", "-w", section, name], env=env).stdout.strip(), page)
            shown = run(["man", "--warnings", section, name], check=False, env=env)
            self.assertEqual((shown.returncode, shown.stderr), (0, ""), page)
            self.assertIn(f"{name}({section})", shown.stdout.splitlines()[0])
        # bash completion: bash-completion's loader finds it by the command's name
        loaded = run(["bash", "--norc", "-c", "source /usr/share/bash-completion/bash_completion && "
                      "__load_completion veerctl && complete -p veerctl"], check=False)
        self.assertEqual((loaded.returncode, loaded.stdout.strip()), (0, "complete -F _veerctl veerctl"),
                         loaded.stderr)

        self.assertTrue(group_exists("veer"), "postinst did not create the group veer")
        self.assertLess(grp.getgrnam("veer").gr_gid, 1000, "veer must be a system group")

        unit = "/usr/lib/systemd/system/veerd.service"
        with open(unit) as f:
            text = f.read()
        self.assertIn("ExecStart=/usr/sbin/veerd --config /etc/veer/veer.yaml --foreground", text)
        self.assertIn("Type=notify", text)
        self.assertNotIn("@", text.split("[Unit]", 1)[1].replace("veer@localhost", ""), "unrendered placeholder")
        verify = run(["systemd-analyze", "verify", "--man=no", unit], check=False, cwd=self.work)
        self.assertEqual((verify.returncode, verify.stdout + verify.stderr), (0, ""))

        # the shipped Prometheus rules pass their own unit tests where they were installed (docs/prometheus.md)
        if shutil.which("promtool"):
            rules = run(["promtool", "test", "rules", "veer.rules.test.yml"], check=False,
                        cwd="/usr/share/veer/prometheus")
            self.assertEqual(rules.returncode, 0, rules.stdout + rules.stderr)
        else:
            print("  promtool not here (package prometheus): installed rules not tested", flush=True)

        conffiles = run(["dpkg-query", "-W", "-f=${Conffiles}", "veer"]).stdout
        self.assertIn("/etc/veer/veer.yaml", conffiles)

        run(["dpkg", "--purge", "veer"], timeout=120)
        self.assertFalse(package_installed())
        left = [p for p in PACKAGE_FILES + ["/etc/veer", "/var/lib/veer", "/usr/share/veer"] if os.path.exists(p)]
        self.assertEqual(left, [], "left behind by purge")


if __name__ == "__main__":
    e2e.main()
