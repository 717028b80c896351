#!/usr/bin/env python3
"""veerd in fleet mode over TLS to a real etcd (docs/fleet.md "TLS"): the testbed's lb namespace runs an etcd
3.4 whose client URL is https on its loopback, with --client-cert-auth and certificates made by the
docs' own openssl recipe (so the recipe works as written). veerd's config has `cluster.tls`.
(a) veerd connects, `weights` is written as version 1 through TLS and applied (the table and the kernel's
    choice of new connections follow it), status shows "tls": true, and etcdctl with the same client
    certificate reads the version veer wrote;
(b) veerd with a CA that did not sign etcd's certificate: it keeps forwarding on its table, says it cannot
    reach etcd and why (certificate verify failed), and a `weights` is refused and writes nothing;
(c) veerd without a client certificate: etcd refuses it (bad certificate); the same: nothing written."""
import json
import os
import shutil
import subprocess
import tempfile

import veer_e2e as e2e

SERVICE = "ranker"
CLIENT_PORT = 23790
PEER_PORT = 23800
ENDPOINT = f"https://127.0.0.1:{CLIENT_PORT}"


def docs_recipe():
    """The openssl commands of docs/fleet.md's TLS section, as written there (the ```sh block)."""
    with open(os.path.join(e2e.ARGS.source_dir, "docs", "fleet.md")) as f:
        text = f.read()
    section = text[text.index("## TLS"):]
    block = section[section.index("```sh\n") + 6:]
    block = block[:block.index("```")]
    return block[:block.index("\netcd ")]  # the commands before the etcd line


class TestFleetTls(e2e.VeerCase):
    prefix = "ve2e-ftls"
    with_veerd = False  # started by the cases, on the configs they need

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.pki = tempfile.mkdtemp(prefix="veer-e2e-pki-")
        cls.etcd = None
        try:
            # The docs' recipe for 127.0.0.1 (the member's address here) and a second, unrelated CA.
            recipe = docs_recipe().replace("IP:10.9.0.11,DNS:etcd-1", "IP:127.0.0.1,DNS:localhost")
            recipe += ("\nopenssl req -x509 $ec -subj /CN=other-ca -keyout other-ca.key -out other-ca.pem "
                       "-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign\n")
            subprocess.run(["bash", "-euc", recipe], cwd=cls.pki, check=True, capture_output=True, timeout=60)
            cls.etcd_log = open(os.path.join(cls.pki, "etcd.log"), "w")
            cls.etcd = subprocess.Popen(
                ["ip", "netns", "exec", cls.tb.ns("lb"), "etcd", "--name", "e1", "--data-dir",
                 os.path.join(cls.pki, "data"), "--listen-client-urls", ENDPOINT, "--advertise-client-urls",
                 ENDPOINT, "--listen-peer-urls", f"http://127.0.0.1:{PEER_PORT}", "--initial-advertise-peer-urls",
                 f"http://127.0.0.1:{PEER_PORT}", "--initial-cluster", f"e1=http://127.0.0.1:{PEER_PORT}",
                 "--cert-file", cls.file("server.pem"), "--key-file", cls.file("server.key"), "--trusted-ca-file",
                 cls.file("ca.pem"), "--client-cert-auth"],
                stdout=cls.etcd_log, stderr=subprocess.STDOUT, start_new_session=True)
            e2e.wait_for("etcd answers over TLS", lambda: cls.etcdctl("endpoint", "health").returncode == 0,
                         e2e.scaled(20), 0.2)
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            if getattr(cls, "etcd", None) is not None:
                cls.etcd.kill()
                cls.etcd.wait()
                cls.etcd_log.close()
        finally:
            shutil.rmtree(getattr(cls, "pki", "/nonexistent"), ignore_errors=True)
            super().tearDownClass()

    @classmethod
    def file(cls, name):
        return os.path.join(cls.pki, name)

    @classmethod
    def etcdctl(cls, *args):
        return cls.tb.exec("lb", ["etcdctl", "--endpoints", ENDPOINT, "--cacert", cls.file("ca.pem"), "--cert",
                                  cls.file("client.pem"), "--key", cls.file("client.key"), "--command-timeout", "3s",
                                  *args], check=False, timeout=10)

    def table_version(self):
        """The version of ranker's table in etcd (0: none), as etcdctl reads it."""
        out = self.etcdctl("get", f"/veer/services/{SERVICE}/table", "--print-value-only").stdout.strip()
        return json.loads(out)["version"] if out else 0

    def start(self, tls_lines):
        text = self.tb.render_config() + ("cluster:\n"
                                          f"  endpoints: [\"{ENDPOINT}\"]\n"
                                          "  node_name: node-1\n"
                                          "  lease_ttl: 2s\n"
                                          "  tls:\n" + "".join(f"    {l}\n" for l in tls_lines))
        self.tb.write_config(text)
        veerd = e2e.Veerd(self.tb, self.tb.config)
        veerd.start()
        self.addCleanup(veerd.stop)
        return veerd

    def fleet(self, veerd):
        answer = veerd.request({"cmd": "status"})
        self.assertTrue(answer.get("ok"), answer)
        return answer["result"]["fleet"]

    def assert_refused_and_nothing_written(self, veerd, why):
        e2e.wait_for("veerd says etcd cannot be reached, and why",
                     lambda: not self.fleet(veerd)["connected"] and why in self.fleet(veerd)["connection"],
                     e2e.scaled(10), 0.1)
        before = self.table_version()
        weights = e2e.applied(veerd.service_status(SERVICE))
        rc, answer = veerd.ctl_json("weights", SERVICE, "blue=50", "green=25", "canary=25", check=False)
        self.assertFalse(answer["ok"], answer)
        self.assertIn("etcd unreachable", answer["error"]["message"])
        self.assertEqual(self.table_version(), before, "a refused change wrote a version")
        self.assertEqual(e2e.applied(veerd.service_status(SERVICE)), weights)
        # It keeps forwarding on the table it has.
        r = self.tb.client("http", "--dst", e2e.VIP4, "--port", 80, "--src", "10.0.1.21", "--count", 50)
        self.assertEqual(r["completed"], 50, r)
        print(f"  {self.fleet(veerd)['connection'][:160]}", flush=True)

    def test_a_weights_through_tls(self):
        veerd = self.start([f"ca: {self.file('ca.pem')}", f"cert: {self.file('client.pem')}",
                            f"key: {self.file('client.key')}"])
        e2e.wait_for("connected to etcd over TLS", lambda: self.fleet(veerd)["connected"], e2e.scaled(10), 0.1)
        self.assertTrue(self.fleet(veerd)["tls"])
        rc, answer = veerd.ctl_json("weights", SERVICE, "blue=0", "green=100", "canary=0")
        self.assertTrue(answer["ok"], answer)
        version = answer["result"]["fleet"]["version"]
        self.assertEqual(self.table_version(), version)
        e2e.wait_for("the version applied", lambda: self.fleet(veerd)["services"][SERVICE]["applied_version"]
                     == version, e2e.scaled(5), 0.05)
        r = self.tb.client("http", "--dst", e2e.VIP4, "--port", 80, "--src", "10.0.1.20", "--count", 100)
        self.assertEqual(r["variants"], {"green": 100}, r)
        print(f"  (a) version {version} written over TLS, read back by etcdctl, 100/100 new connections on green",
              flush=True)

    def test_b_a_ca_that_did_not_sign_etcds_certificate(self):
        veerd = self.start([f"ca: {self.file('other-ca.pem')}", f"cert: {self.file('client.pem')}",
                            f"key: {self.file('client.key')}"])
        self.assert_refused_and_nothing_written(veerd, "certificate verify failed")

    def test_c_no_client_certificate(self):
        veerd = self.start([f"ca: {self.file('ca.pem')}"])
        self.assert_refused_and_nothing_written(veerd, "bad certificate")


if __name__ == "__main__":
    e2e.main()
