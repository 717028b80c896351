#!/usr/bin/env python3
"""`veerctl --version` and `veerd --version` print the project's version (project(veer VERSION ...) in the
top-level CMakeLists.txt, read here on its own, not through the header CMake generates) and exit 0; `veerctl
--help` shows it in its first line; --version beside a command still only prints the version.

    test_cli_version.py --source-dir SRC --veerd VEERD --veerctl VEERCTL
"""
import argparse
import re
import subprocess
import sys
import unittest

ARGS = argparse.Namespace()


def run(*cmd):
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30)


class TestVersion(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with open(f"{ARGS.source_dir}/CMakeLists.txt") as f:
            cls.version = re.search(r"^project\(veer VERSION ([0-9]+\.[0-9]+\.[0-9]+)\b", f.read(), re.M).group(1)

    def test_veerctl_version(self):
        proc = run(ARGS.veerctl, "--version")
        self.assertEqual((proc.returncode, proc.stdout, proc.stderr), (0, f"veerctl {self.version}\n", ""))

    def test_veerd_version(self):
        proc = run(ARGS.veerd, "--version")
        self.assertEqual((proc.returncode, proc.stdout, proc.stderr), (0, f"veerd {self.version}\n", ""))

    def test_veerctl_help_shows_the_version(self):
        proc = run(ARGS.veerctl, "--help")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(proc.stdout.splitlines()[0], f"veerctl {self.version}")
        self.assertIn("--version", proc.stdout)

    def test_version_needs_no_daemon(self):
        # --version answers before any socket is touched.
        proc = run(ARGS.veerctl, "--socket", "/nonexistent/veer.sock", "--version")
        self.assertEqual((proc.returncode, proc.stdout), (0, f"veerctl {self.version}\n"))

    def test_the_hidden_completion_command_is_not_in_help(self):
        self.assertNotIn("__complete", run(ARGS.veerctl, "--help").stdout)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    for name in ("--source-dir", "--veerd", "--veerctl"):
        ap.add_argument(name, required=True)
    ns, rest = ap.parse_known_args()
    vars(ARGS).update(vars(ns))
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)
