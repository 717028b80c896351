#!/usr/bin/env python3
"""The README's two commands ("Two commands (fresh Debian 12, as root)") as root types them on a bare Debian 12,
which has no sudo. The commands are read from the README's text, not copied here, and run as written in the
repository's folder, in a clean environment whose PATH has no sudo in it: the one `su -` gives root
(login.defs ENV_SUPATH) and the one a plain `su` leaves (a user's ENV_PATH, without the sbin folders). Every
command bash cannot find is recorded (an exported command_not_found_handle), and none may be.

What runs and what does not, honestly: scripts/test.sh runs as typed through install-deps.sh (which calls
apt-get only for missing packages: where all are installed, as here, apt is not exercised), cmake's configure
and the build of this build tree; its last step, ctest over every layer, is a stand-in `ctest` on the PATH
that records its arguments, folder and PATH (running every layer from inside one of its tests would recurse).
scripts/demo.sh runs as typed with DEMO_STOP_AFTER_BUILD=1 through the same install and build steps and stops
before its testbed. Besides, no script, test, CI file or document of the repository calls sudo.

    test_readme_commands.py --source-dir SRC --build-dir BUILD
"""
import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

ARGS = argparse.Namespace()
SECTION = "## Two commands (fresh Debian 12, as root)"
# A word "sudo" followed by what it would run: an invocation, not the explanations that say there is none.
SUDO_CALL = re.compile(r"(?<![\w-])sudo(\s+-\S+)*\s+[\w./$\"'-]")


def readme_commands():
    with open(os.path.join(ARGS.source_dir, "README.md")) as f:
        text = f.read()
    section = text.split("\n" + SECTION + "\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    return [c for c in (line.split("#", 1)[0].strip() for line in block.splitlines()) if c]


def login_defs_path(key, default):
    try:
        with open("/etc/login.defs") as f:
            m = re.search(rf"^{key}\s+PATH=(\S+)", f.read(), re.M)
            return m.group(1) if m else default
    except OSError:
        return default


def without_sudo(path, work):
    """PATH with every folder that holds a sudo replaced by a copy of its links without it."""
    dirs = []
    for i, d in enumerate(path.split(":")):
        if os.path.exists(os.path.join(d, "sudo")):
            copy = os.path.join(work, f"nosudo{i}")
            os.mkdir(copy)
            for name in os.listdir(d):
                if name != "sudo":
                    os.symlink(os.path.join(d, name), os.path.join(copy, name))
            d = copy
        dirs.append(d)
    return ":".join(dirs)


class TestReadmeCommands(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            raise unittest.SkipTest("the README's commands are typed by root")
        with open(os.path.join(ARGS.build_dir, "CMakeCache.txt")) as f:
            cache = f.read()
        # test.sh configures with RelWithDebInfo: on a tree of another type it would rebuild everything.
        if "CMAKE_BUILD_TYPE:STRING=RelWithDebInfo" not in cache:
            raise unittest.SkipTest("the build tree is not RelWithDebInfo, which scripts/test.sh configures")
        cls.commands = readme_commands()
        cls.work = tempfile.mkdtemp(prefix="veer-readme-")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.work, ignore_errors=True)

    def run_as_root(self, command, path_kind, extra_env=None):
        work = tempfile.mkdtemp(dir=self.work, prefix=path_kind + "-")
        shim = os.path.join(work, "shim")
        os.mkdir(shim)
        ctest_log = os.path.join(work, "ctest.json")
        with open(os.path.join(shim, "ctest"), "w") as f:
            f.write("#!/usr/bin/env python3\nimport json, os, sys\n"
                    f"json.dump({{'argv': sys.argv[1:], 'cwd': os.getcwd(), 'path': os.environ['PATH']}}, "
                    f"open({ctest_log!r}, 'w'))\n")
        os.chmod(os.path.join(shim, "ctest"), 0o755)
        base = (login_defs_path("ENV_SUPATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
                if path_kind == "su-login" else login_defs_path("ENV_PATH", "/usr/local/bin:/usr/bin:/bin"))
        path = shim + ":" + without_sudo(base, work)
        self.assertIsNone(shutil.which("sudo", path=path))
        not_found = os.path.join(work, "not-found.log")
        env = {"PATH": path, "HOME": "/root", "USER": "root", "LOGNAME": "root", "SHELL": "/bin/bash",
               "TERM": "dumb", "BUILD_DIR": ARGS.build_dir, "VEER_BUILD_DIR": ARGS.build_dir,
               # bash imports this into every bash below (the scripts are bash): each missing command is logged.
               "BASH_FUNC_command_not_found_handle%%":
                   f"() {{ echo \"$1\" >> {not_found}; echo \"bash: $1: command not found\" >&2; return 127; }}"}
        env.update(extra_env or {})
        proc = subprocess.run(["bash", "--noprofile", "--norc", "-c", command], cwd=ARGS.source_dir, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=1500)
        missing, ctest = [], None
        if os.path.exists(not_found):
            with open(not_found) as f:
                missing = f.read().split()
        if os.path.exists(ctest_log):
            with open(ctest_log) as f:
                ctest = json.load(f)
        return proc, missing, ctest

    def test_the_two_commands_are_typed_without_sudo(self):
        self.assertEqual(self.commands, ["scripts/demo.sh", "scripts/test.sh"])

    def test_test_sh_as_typed(self):
        command = next(c for c in self.commands if c.startswith("scripts/test.sh"))
        for path_kind in ("su-login", "su"):
            with self.subTest(path=path_kind):
                proc, missing, ctest = self.run_as_root(command, path_kind)
                tail = proc.stdout[-3000:]
                self.assertEqual(missing, [], tail)
                self.assertNotIn("command not found", proc.stdout)
                self.assertEqual(proc.returncode, 0, tail)
                self.assertIn("install-deps:", proc.stdout)
                self.assertIsNotNone(ctest, f"test.sh did not reach ctest:\n{tail}")
                self.assertEqual(ctest["argv"], ["--output-on-failure", "--timeout", "900"])
                self.assertEqual(os.path.realpath(ctest["cwd"]), os.path.realpath(ARGS.build_dir))
                # What the tests would have run with: the sbin tools found, sudo not.
                self.assertIn("/usr/sbin", ctest["path"].split(":"))
                self.assertIsNotNone(shutil.which("sysctl", path=ctest["path"]))
                self.assertIsNone(shutil.which("sudo", path=ctest["path"]))
                print(f"  {path_kind}: {command} ran through install-deps and the build to ctest", flush=True)

    def test_demo_sh_as_typed_through_its_build(self):
        command = next(c for c in self.commands if c.startswith("scripts/demo.sh"))
        proc, missing, _ = self.run_as_root(command, "su-login", {"DEMO_STOP_AFTER_BUILD": "1"})
        tail = proc.stdout[-3000:]
        self.assertEqual(missing, [], tail)
        self.assertNotIn("command not found", proc.stdout)
        self.assertEqual(proc.returncode, 0, tail)
        self.assertIn("installing Debian packages", proc.stdout)
        self.assertIn("demo: stopped after the build", proc.stdout)

    def test_nothing_calls_sudo(self):
        root = ARGS.source_dir
        files = [os.path.join(root, "README.md"), os.path.join(root, ".ci", "run")]
        for pattern in ("docs/**/*.md", "scripts/**/*", "tests/**/*", "packaging/**/*", "examples/**/*"):
            files += [f for f in glob.glob(os.path.join(root, pattern), recursive=True) if os.path.isfile(f)]
        calls = []
        for f in files:
            if os.path.samefile(f, __file__):
                continue
            try:
                with open(f, encoding="utf-8") as fh:
                    text = fh.read()
            except (UnicodeDecodeError, OSError):
                continue
            calls += [f"{os.path.relpath(f, root)}:{n}: {line.strip()}"
                      for n, line in enumerate(text.splitlines(), 1) if SUDO_CALL.search(line)]
        self.assertEqual(calls, [])
        # The check finds what it looks for.
        self.assertTrue(SUDO_CALL.search("  sudo scripts/test.sh") and SUDO_CALL.search("sudo -E ./x"))
        self.assertFalse(SUDO_CALL.search("a bare Debian 12 has no `sudo`: log in as root")
                         or SUDO_CALL.search("(a bare Debian has no sudo: log in as root or use su -)"))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--source-dir", required=True)
    ap.add_argument("--build-dir", required=True)
    ns, rest = ap.parse_known_args()
    vars(ARGS).update(vars(ns))
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)
