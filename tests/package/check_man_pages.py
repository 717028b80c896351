#!/usr/bin/env python3
"""The man pages as built (packaging/man/*.scd through scdoc): each renders without a warning (groff with every
warning on, man --warnings; mandoc's lint), carries the project's version, and is true to the code it describes:
every option of `veerctl --help` and `veerd --help` is in its page and the page names no option the binary lacks,
every command of veerctl's usage has its entry, and every key the config loader accepts (the key lists of
userspace/lib/config/config.cc) is in veer.yaml(5).

    check_man_pages.py --man-dir BUILD/packaging/man --veerd VEERD --veerctl VEERCTL --source-dir SRC
"""
import argparse
import gzip
import os
import re
import subprocess
import sys
import unittest

ARGS = argparse.Namespace()
PAGES = ("veerctl.1", "veer.yaml.5", "veerd.8")
# scdoc 1.11 opens every paragraph with .P, also right after .SH/.TP; mandoc's lint reports the redundant
# macro (it skips it; the rendering is the same). Every other mandoc message fails the check.
SCDOC_PARAGRAPH = re.compile(r"WARNING: skipping paragraph macro: PP (empty|after SH)$")


def run(cmd, **kw):
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60, **kw)


def page_path(page):
    return os.path.join(ARGS.man_dir, page)


def rendered(page):
    """The page as man shows it, plain text (no overstrike), 200 columns so that no option is hyphenated."""
    env = dict(os.environ, MANWIDTH="200", MAN_KEEP_FORMATTING="0", LC_ALL="C.UTF-8")
    proc = run(["man", "--warnings", "-l", page_path(page)], env=env)
    assert proc.returncode == 0, proc.stderr
    return re.sub(r".\x08", "", proc.stdout)


def help_options(binary):
    """The long options a binary's --help lists."""
    out = run([binary, "--help"]).stdout
    return set(re.findall(r"(?<![\w-])--([a-z][a-z-]+)", out))


def project_version():
    with open(os.path.join(ARGS.source_dir, "CMakeLists.txt")) as f:
        return re.search(r"project\(veer VERSION ([0-9.]+)", f.read()).group(1)


class TestManPages(unittest.TestCase):
    def test_render_without_warnings(self):
        for page in PAGES:
            with self.subTest(page=page):
                groff = run(["groff", "-man", "-Tutf8", "-ww", "-z", page_path(page)])
                self.assertEqual((groff.returncode, groff.stderr), (0, ""))
                env = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8")
                man = run(["man", "--warnings", "-l", page_path(page)], env=env)
                self.assertEqual((man.returncode, man.stderr), (0, ""))
                self.assertGreater(len(man.stdout.splitlines()), 40, "a page of substance")
                lint = run(["mandoc", "-T", "lint", "-W", "warning", page_path(page)])
                other = [line for line in (lint.stdout + lint.stderr).splitlines() if not SCDOC_PARAGRAPH.search(line)]
                self.assertEqual(other, [], "mandoc -T lint")

    def test_gzipped_copy_and_header(self):
        version = project_version()
        for page in PAGES:
            with self.subTest(page=page):
                with open(page_path(page), "rb") as f:
                    roff = f.read()
                with gzip.open(page_path(page) + ".gz") as f:
                    self.assertEqual(f.read(), roff, "the installed .gz is the page")
                name, section = page.rsplit(".", 1)
                th = next(line for line in roff.decode().splitlines() if line.startswith(".TH"))
                self.assertIn(f'"{name}" "{section}"', th)
                self.assertIn(f"veer {version}", th)

    def check_options(self, binary, page):
        in_help = help_options(binary)
        text = rendered(page)
        in_page = set(re.findall(r"(?<![\w-])--([a-z][a-z-]+)", text))
        self.assertGreater(len(in_help), 5)
        self.assertEqual(sorted(in_help - in_page), [], f"options of {binary} --help missing from {page}")
        self.assertEqual(sorted(in_page - in_help), [], f"{page} names options {binary} does not have")

    def test_veerctl_options_and_commands(self):
        self.check_options(ARGS.veerctl, "veerctl.1")
        usage = run([ARGS.veerctl, "--help"]).stdout
        commands = re.findall(r"^  ([a-z]+)\b", usage, re.M)
        self.assertIn("weights", commands)
        text = rendered("veerctl.1")
        section = text.split("\nCOMMANDS\n", 1)[1].split("\nEXIT STATUS\n", 1)[0]
        for command in commands:
            self.assertRegex(section, rf"(?m)^ {{7}}{command}\b", f"veerctl.1 has no entry for {command}")

    def test_veerd_options(self):
        self.check_options(ARGS.veerd, "veerd.8")

    def test_every_config_key_documented(self):
        with open(os.path.join(ARGS.source_dir, "userspace", "lib", "config", "config.cc")) as f:
            source = f.read()
        keys = set()
        # fields(node, at, what, {"a", "b"}) and the rollout's allowed keys per strategy.
        for group in re.findall(r"(?:fields\([^{;]*|allowed(?:\.insert\([^{;]*)?\s*)\{((?:\s*\"[a-z_]+\",?)+)\s*\}",
                                source):
            keys.update(re.findall(r"\"([a-z_]+)\"", group))
        self.assertTrue({"interfaces", "udp_idle_timeout", "lease_ttl", "server_name", "min_detectable_effect",
                         "post_promotion", "smoothing", "set_weight"} <= keys, f"key lists not found: {keys}")
        text = rendered("veer.yaml.5")
        words = set(re.findall(r"[a-z_]+", text))
        self.assertEqual(sorted(keys - words), [], "config keys missing from veer.yaml(5)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    for name in ("--man-dir", "--veerd", "--veerctl", "--source-dir"):
        ap.add_argument(name, required=True)
    ns, rest = ap.parse_known_args()
    vars(ARGS).update(vars(ns))
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)
