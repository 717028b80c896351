#!/usr/bin/env python3
"""veerctl's bash completion (packaging/bash-completion/veerctl), sourced into a real bash.

Two ways in: the completion function called as bash calls it (COMP_LINE, COMP_POINT, COMP_WORDS and COMP_CWORD
set as bash sets them, COMPREPLY read back), and an interactive bash on a pseudo-terminal where TAB is typed,
so readline's own word breaking (':' and '=') and the no-space after "VARIANT=" are what a user gets.

Without a daemon: the commands (every one of `veerctl --help`'s usage), the options each command takes, and no
names (quickly). Against a veerd on the testbed (prefix ve2cl, examples/testbed.yaml): service, variant and
backend names as veerd's status has them, through --socket PATH, --socket=PATH and $VEER_SOCKET; and a veerd
that does not answer (SIGSTOP) costs the prompt at most the 2 s bound and offers nothing.
"""
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

import veer_e2e as e2e
from veer_e2e import ARGS

BREAKS = "\"'><=;|&(:"
NO_DAEMON = "/nonexistent/veer-completion/veer.sock"


def completion_file():
    return os.path.join(ARGS.source_dir, "packaging", "bash-completion", "veerctl")


def comp_words(line):
    """COMP_WORDS as bash splits LINE: at blanks, and runs of COMP_WORDBREAKS characters are words of their own."""
    words = re.findall(r"[^\s%s]+|[%s]+" % (re.escape(BREAKS), re.escape(BREAKS)), line)
    if not words or line[-1].isspace():
        words.append("")
    return words


def complete(line, env=None):
    """COMPREPLY of _veerctl for LINE with the cursor at its end."""
    script = ('source "$1"; COMP_LINE=$2; COMP_POINT=${#COMP_LINE}; shift 2; COMP_WORDS=("$@"); '
              'COMP_CWORD=$(($# - 1)); _veerctl; printf "%s\\n" "${COMPREPLY[@]}"')
    full_env = {k: v for k, v in os.environ.items() if k != "VEER_SOCKET"}
    full_env.update(env or {})
    proc = subprocess.run(["bash", "--norc", "--noprofile", "-c", script, "bash", completion_file(), line,
                           *comp_words(line)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=30, env=full_env)
    if proc.returncode != 0:
        raise AssertionError(f"completion of {line!r} failed: {proc.stderr}")
    return [w for w in proc.stdout.split("\n") if w]


def help_usage():
    out = subprocess.run([ARGS.veerctl, "--help"], stdout=subprocess.PIPE, text=True, timeout=30).stdout
    commands = re.findall(r"^  ([a-z]+)\b", out, re.M)
    options = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]+)", out))
    return commands, options


class InteractiveBash:
    """bash -i on a pseudo-terminal with the completion sourced: type(line) presses TAB after LINE and returns
    the command line as readline left it ("X" typed after the completion shows whether a space was added)."""

    def __init__(self):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.execvpe("bash", ["bash", "--norc", "--noprofile", "-i"],
                       {"PATH": os.environ["PATH"], "TERM": "dumb", "PS1": "$ ", "HOME": "/root"})
        self.send(f"source {completion_file()}; bind 'set bell-style none'\n")
        self.read_until(lambda out: out.count("$ ") >= 2, 10)

    def send(self, text):
        os.write(self.fd, text.encode())

    def read_until(self, done, timeout):
        out, deadline = "", time.monotonic() + timeout
        while time.monotonic() < deadline and not done(out):
            ready, _, _ = select.select([self.fd], [], [], 0.1)
            if ready:
                try:
                    out += os.read(self.fd, 65536).decode(errors="replace")
                except OSError:
                    break
        return out

    def type(self, line):
        # TAB, then "X", then to the line's start (Ctrl-A) to make it an echo whose output is the line.
        self.send(line + "\t")
        time.sleep(0.7)
        self.send("X\x01echo RESULT: \n")
        out = self.read_until(lambda o: re.search(r"(?m)^RESULT: .*\r?\n", o), 10)
        m = re.search(r"(?m)^RESULT: (.*?)\r?$", out)
        if not m:
            raise AssertionError(f"no result for {line!r}: {out!r}")
        return m.group(1)

    def close(self):
        try:
            self.send("exit\n")
            os.waitpid(self.pid, 0)
        except OSError:
            pass
        os.close(self.fd)


class TestCompletionWithoutDaemon(unittest.TestCase):
    def setUp(self):
        e2e.require_veer(self)
        self.v = f"{ARGS.veerctl} --socket {NO_DAEMON}"

    def test_commands_are_the_usages(self):
        commands, _ = help_usage()
        self.assertGreaterEqual(len(commands), 13)
        self.assertEqual(complete(f"{ARGS.veerctl} "), commands)
        self.assertEqual(complete(f"{ARGS.veerctl} st"), ["status"])
        self.assertEqual(complete(f"{ARGS.veerctl} --json s"), ["status", "switch", "shutdown"])
        self.assertEqual(complete(f"{self.v} r"), ["rollout", "reload", "report"])

    def test_options_per_command(self):
        globals_ = ["--socket", "--json", "--help", "--version"]
        self.assertEqual(complete(f"{ARGS.veerctl} --"), globals_)
        self.assertEqual(complete(f"{self.v} events --"), globals_ + ["--follow", "--since"])
        self.assertEqual(complete(f"{self.v} weights ranker blue=90 canary=10 --"), globals_ + ["--force", "--adopt"])
        self.assertEqual(complete(f"{self.v} rollout promote ranker --f"), ["--full"])
        self.assertEqual(complete(f"{self.v} rollout abort ranker --f"), [])
        self.assertEqual(complete(f"{self.v} drain ranker 10.1.3.2:8080 --u"), ["--undo"])
        self.assertEqual(complete(f"{self.v} shutdown --u"), ["--unload"])
        self.assertEqual(complete(f"{self.v} status --w"), ["--watch"])
        self.assertEqual(complete(f"{self.v} ping --w"), [])

    def test_every_option_of_help_is_offered(self):
        commands, options = help_usage()
        offered = set()
        for command in commands:
            offered.update(complete(f"{self.v} {command} --"))
        self.assertEqual(offered, options)

    def test_no_names_and_no_wait_without_a_daemon(self):
        for line in (f"{self.v} status ", f"{self.v} weights ranker ", f"{self.v} drain ranker ",
                     f"{ARGS.veerctl} switch ranker "):
            start = time.monotonic()
            self.assertEqual(complete(line, env={"VEER_SOCKET": NO_DAEMON}), [], line)
            self.assertLess(time.monotonic() - start, 2.0, line)
        self.assertEqual(complete(f"{self.v} rollout "), ["start", "promote", "pause", "abort", "retry"])

    def test_socket_takes_a_file_name(self):
        d = tempfile.mkdtemp(prefix="veer-completion-")
        try:
            open(os.path.join(d, "veer.sock"), "w").close()
            self.assertEqual(complete(f"{ARGS.veerctl} --socket {d}/v"), [f"{d}/veer.sock"])
            # "--socket=/d/v": readline replaces what follows '=', so the reply is the path alone.
            self.assertEqual(complete(f"{ARGS.veerctl} --socket={d}/v"), [f"{d}/veer.sock"])
        finally:
            shutil.rmtree(d)


class TestCompletionWithDaemon(e2e.VeerCase):
    prefix = "ve2cl"

    def setUp(self):
        self.sock = self.tb.socket
        self.v = f"{ARGS.veerctl} --socket {self.sock}"
        self.status = self.veerd.status()

    def names(self, service=None):
        if service is None:
            return [s["name"] for s in self.status["services"]]
        return [v["name"] for v in self.veerd.service(service, self.status)["variants"]]

    def test_services(self):
        services = self.names()
        self.assertEqual(services, ["ranker", "ranker-udp", "ranker-echo", "ranker6"])
        self.assertEqual(complete(f"{self.v} status "), services)
        self.assertEqual(complete(f"{self.v} status ranker-"), ["ranker-udp", "ranker-echo"])
        self.assertEqual(complete(f"{ARGS.veerctl} --socket={self.sock} ab r"), services)
        self.assertEqual(complete(f"{self.v} events --since 3 "), services)
        self.assertEqual(complete(f"{self.v} rollout start ranker6"), ["ranker6"])
        self.assertEqual(complete(f"{ARGS.veerctl} which ", env={"VEER_SOCKET": self.sock}), services)
        self.assertEqual(complete(f"{self.v} which ranker "), [])  # a client address: nothing to offer

    def test_variants(self):
        variants = self.names("ranker")
        self.assertEqual(variants, ["blue", "green", "canary"])
        self.assertEqual(complete(f"{self.v} weights ranker "), [f"{v}=" for v in variants])
        self.assertEqual(complete(f"{self.v} weights ranker blue=90 "), ["green=", "canary="])
        self.assertEqual(complete(f"{self.v} weights ranker blue=90 c"), ["canary="])
        self.assertEqual(complete(f"{self.v} weights ranker blue="), [])  # a percentage follows
        self.assertEqual(complete(f"{self.v} switch ranker-udp g"), ["green"])
        self.assertEqual(complete(f"{self.v} push ranker "), variants)
        self.assertEqual(complete(f"{self.v} push ranker canary "), [])
        self.assertEqual(complete(f"{self.v} switch nosuch "), [])
        self.assertEqual(complete(f"{self.v} weights nosuch "), [])

    def test_backends(self):
        backends = [b["address"] for v in self.veerd.service("ranker", self.status)["variants"] for b in v["backends"]]
        self.assertEqual(complete(f"{self.v} drain ranker "), backends)
        self.assertEqual(complete(f"{self.v} drain ranker 10.1.3"), ["10.1.3.2:8080"])
        # readline replaces what follows the last ':' only: the reply is the rest of the address.
        self.assertEqual(complete(f"{self.v} drain ranker 10.1.3.2:"), ["8080"])
        self.assertEqual(complete(f"{self.v} drain ranker6 [fd00:13::2]:"), ["8080"])
        self.assertEqual(complete(f"{self.v} drain ranker6 [fd00:13"), ["13::2]:8080"])  # after "[fd00:"

    def test_interactive_tab(self):
        bash = InteractiveBash()
        try:
            self.assertEqual(bash.type(f"{self.v} weights ranker bl"), f"{self.v} weights ranker blue=X")
            self.assertEqual(bash.type(f"{self.v} drain ranker 10.1.3"), f"{self.v} drain ranker 10.1.3.2:8080 X")
            self.assertEqual(bash.type(f"{self.v} drain ranker6 [fd00:13::2]:"),
                             f"{self.v} drain ranker6 [fd00:13::2]:8080 X")
            self.assertEqual(bash.type(f"{self.v} drain ranker6 [fd00:13"), f"{self.v} drain ranker6 [fd00:13::2]:8080 X")
            self.assertEqual(bash.type(f"{ARGS.veerctl} --socket={self.sock} switch ranker gr"),
                             f"{ARGS.veerctl} --socket={self.sock} switch ranker green X")
            self.assertEqual(bash.type(f"{ARGS.veerctl} shut"), f"{ARGS.veerctl} shutdown X")
        finally:
            bash.close()

    def test_zz_a_daemon_that_does_not_answer(self):
        os.kill(self.veerd.proc.pid, signal.SIGSTOP)
        try:
            start = time.monotonic()
            self.assertEqual(complete(f"{self.v} status "), [])
            took = time.monotonic() - start
            print(f"  completion with a stopped veerd: nothing after {took:.2f} s", flush=True)
            self.assertLess(took, 3.0)
        finally:
            os.kill(self.veerd.proc.pid, signal.SIGCONT)
        self.assertEqual(complete(f"{self.v} status "), self.names())


if __name__ == "__main__":
    e2e.main()
