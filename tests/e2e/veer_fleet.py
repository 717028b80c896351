"""The fleet testbed for e2e tests (scripts/testbed.sh up --fleet N; issue 11: one rollout, many nodes through
etcd). Python 3 stdlib only; import beside veer_e2e and run the file through veer_e2e.main().

  fleet = FleetTestbed("ve2e-fleet")          # 3 nodes; namespaces ve2e-fleet-lb1..3, -client1..3, -fabric,
  fleet.up()                                  #   -blue, -green, -canary, -etcd1..3
  node = fleet.node(2)                        # a veer_e2e.Testbed seen from node 2: ns("lb") is ...-lb2,
  node.client("http", "--dst", ..., "--src", node.client_addr(11), "--count", 100)   # ns("client") ...-client2
  node.rate_client(...); node.long_client(...); node.exec("lb", [...]); node.backend_stats("blue")
  veerd = fleet.veerd(2)                      # veer_e2e.Veerd in ...-lb2 on node 2's config (write_node_config)
  fleet.etcdctl("put", "k", "v", member=1, where="lb1"); fleet.etcd_get("k", member=3, where="lb3")
  fleet.etcd_stop(2); fleet.etcd_start(2); fleet.wait_etcd_healthy()
  fleet.cut(2); fleet.restore(2)
  fleet.down()

Addresses: client N 10.0.N.10..60/24 and fd00:N::10..60/64 behind node N (lbc 10.0.N.1, fd00:N::1; fabric
link fab 10.3.N.2, fd00:3N::2); the backends at the single-node testbed's addresses (veer_e2e.BACKEND4/6)
behind the fabric router, which routes client N's subnet via node N; etcd member M at http://10.2.M.2:2379.
The VIPs (veer_e2e.VIP4/6) are the same for every node and routed nowhere.
"""
import importlib.util
import os
import subprocess
import sys
import unittest

import veer_e2e as e2e

ETCD_MEMBERS = 3


def etcd_endpoint(member):
    return f"http://10.2.{member}.2:2379"


def _make_config_module():
    path = os.path.join(e2e.ARGS.source_dir, "scripts", "testbed", "make_config.py")
    spec = importlib.util.spec_from_file_location("veer_testbed_make_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fleet_config(text, prefix, node, lease_ttl="2s"):
    """Config TEXT written for the single-node testbed "veer" (examples/testbed.yaml, veer_e2e.ranker_config,
    ...) as node NODE of the fleet of PREFIX: what make_config.py --node does (interfaces [lbc, fab], the node's
    socket, state_dir and pin folder, a cluster: section with node_name node-NODE)."""
    return _make_config_module().render_fleet(text, prefix, node, lease_ttl)


class FleetNode(e2e.Testbed):
    """Node N of a fleet, as a veer_e2e.Testbed: ns("lb") is P-lbN, ns("client") is P-clientN, the backends are
    the shared ones; so client(), rate_client(), long_client(), exec(), backend_stats(), knobs(), fetch() and a
    veer_e2e.Veerd on it work as on the single-node testbed. up() and down() belong to the FleetTestbed."""

    def __init__(self, fleet, n):
        super().__init__(fleet.prefix)
        self.fleet, self.n = fleet, n
        self.name = f"node-{n}"
        self.log_name = f"{fleet.prefix}-lb{n}"
        self.node_dir = os.path.join(self.run_dir, f"lb{n}")
        self.socket = os.path.join(self.node_dir, "veer.sock")
        self.config = os.path.join(self.node_dir, "veer.yaml")
        self.state_dir = os.path.join(self.node_dir, "state")
        self.pin_path = os.path.join(self.run_dir, "bpffs", f"lb{n}")

    def ns(self, name):
        if name == "lb":
            return f"{self.prefix}-lb{self.n}"
        if name == "client":
            return f"{self.prefix}-client{self.n}"
        return super().ns(name)

    def client_addr(self, host=10, v6=False):
        """Client N's address HOST (10..60)."""
        return f"fd00:{self.n}::{host}" if v6 else f"10.0.{self.n}.{host}"

    def up(self, offloads="xdp-safe"):
        raise RuntimeError("a fleet node comes up with its FleetTestbed")

    def down(self):
        raise RuntimeError("a fleet node goes down with its FleetTestbed")

    def render_config(self, template=None):
        template = template or os.path.join(e2e.ARGS.source_dir, "examples", "testbed.yaml")
        out = e2e.run([sys.executable, os.path.join(self.tools, "make_config.py"), "--prefix", self.prefix,
                       "--node", str(self.n), "--template", template])
        return out.stdout


class FleetTestbed:
    """scripts/testbed.sh up --fleet NODES --prefix PREFIX, and what tests do with it."""

    def __init__(self, prefix, nodes=3):
        self.prefix = prefix
        self.script = os.path.join(e2e.ARGS.source_dir, "scripts", "testbed.sh")
        self.tools = os.path.join(e2e.ARGS.source_dir, "scripts", "testbed")
        self.run_dir = f"/run/{prefix}-testbed"
        self.nodes = [FleetNode(self, n) for n in range(1, nodes + 1)]
        self.members = list(range(1, ETCD_MEMBERS + 1))
        self.endpoints = [etcd_endpoint(m) for m in self.members]

    # ------------------------------------------------------------ lifecycle

    def _script(self, *args, timeout=90, check=True):
        return e2e.run([self.script, *map(str, args), "--prefix", self.prefix], timeout=timeout, check=check)

    def up(self, offloads="xdp-safe"):
        self._script("down", timeout=60)  # leftovers of a killed run
        self._script("up", "--fleet", len(self.nodes), "--offloads", offloads, timeout=120)

    def down(self):
        self._script("down", timeout=60, check=False)

    def status(self):
        return self._script("status", check=False, timeout=60)

    def etcd_data_dir(self):
        with open(os.path.join(self.run_dir, "etcd-data")) as f:
            return f.read().strip()

    # ------------------------------------------------------------ namespaces

    def ns(self, name):
        """Full namespace name of NAME: lbN, clientN, fabric, etcdM, blue, green, canary."""
        return f"{self.prefix}-{name}"

    def node(self, n):
        """Node N (1-based) as a FleetNode."""
        return self.nodes[n - 1]

    def exec(self, name, cmd, **kw):
        """CMD in namespace NAME (short name, see ns())."""
        return e2e.run(["ip", "netns", "exec", self.ns(name)] + list(cmd), **kw)

    def exec_node(self, n, cmd, **kw):
        return self.exec(f"lb{n}", cmd, **kw)

    def exec_client(self, n, cmd, **kw):
        return self.exec(f"client{n}", cmd, **kw)

    def client(self, n, mode, *args, timeout=180):
        """client.py MODE in client N's namespace: its JSON answer."""
        return self.node(n).client(mode, *args, timeout=timeout)

    def rate_client(self, n, *args):
        """client.py rate in client N's namespace, in the background (veer_e2e.RateClient)."""
        return self.node(n).rate_client(*args)

    def long_client(self, n, *args):
        return self.node(n).long_client(*args)

    # ------------------------------------------------------------ veerd per node

    def write_node_config(self, n, text=None):
        """Writes node N's config (default: examples/testbed.yaml as node N) to its place; returns the path."""
        node = self.node(n)
        return node.write_config(text if text is not None else node.render_config(), node.config)

    def veerd(self, n, config=None):
        """A veer_e2e.Veerd for node N (not started) on CONFIG (default: node N's written config)."""
        node = self.node(n)
        return e2e.Veerd(node, config or node.config)

    # ------------------------------------------------------------ etcd

    def etcdctl(self, *args, member=None, endpoints=None, where="fabric", timeout=8, check=False,
                command_timeout="2s"):
        """etcdctl ARGS from namespace WHERE (default: the fabric router, which reaches every member) against
        MEMBER's endpoint (or ENDPOINTS, default all three); bounded by --dial-timeout 1s, --command-timeout
        and TIMEOUT. Returns the CompletedProcess (check=False: look at returncode)."""
        if member is not None:
            endpoints = [etcd_endpoint(member)]
        endpoints = endpoints or self.endpoints
        cmd = ["etcdctl", "--endpoints", ",".join(endpoints), "--dial-timeout", "1s",
               "--command-timeout", command_timeout, *map(str, args)]
        try:
            return self.exec(where, cmd, timeout=timeout, check=check)
        except subprocess.TimeoutExpired as exc:
            return subprocess.CompletedProcess(exc.cmd, 124, stdout="", stderr=f"timed out after {exc.timeout}s")

    def etcd_healthy(self, member, where="fabric"):
        """`endpoint health` of MEMBER answered healthy from WHERE (a health check commits: needs quorum)."""
        return self.etcdctl("endpoint", "health", member=member, where=where).returncode == 0

    def wait_etcd_healthy(self, members=None, where="fabric", timeout=30):
        """Waits (bounded by TIMEOUT, scaled) until every member of MEMBERS (default all) is healthy from WHERE."""
        members = members or self.members
        return e2e.wait_for(f"etcd members {members} healthy from {where}",
                            lambda: all(self.etcd_healthy(m, where) for m in members), e2e.scaled(timeout), 0.2)

    def etcd_put(self, key, value, member=1, where="fabric", command_timeout="2s"):
        """put KEY VALUE through MEMBER; the CompletedProcess (returncode 0: committed)."""
        return self.etcdctl("put", key, value, member=member, where=where, command_timeout=command_timeout)

    def etcd_get(self, key, member=1, where="fabric", serializable=True):
        """KEY's value as MEMBER's own store has it (serializable: no quorum needed), None if absent; raises
        when the member does not answer."""
        extra = ["--consistency=s"] if serializable else []
        proc = self.etcdctl("get", key, "--print-value-only", *extra, member=member, where=where)
        if proc.returncode != 0:
            raise AssertionError(f"etcdctl get {key} on member {member} from {where}: {proc.stderr.strip()}")
        lines = proc.stdout.splitlines()
        return lines[0] if lines else None

    def etcd_pids(self, member):
        out = subprocess.run(["ip", "netns", "pids", self.ns(f"etcd{member}")], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split()]

    def etcd_stop(self, member):
        """Stops etcd member MEMBER (TERM, KILL after 2 s); returns once it is gone."""
        self._script("etcd-stop", "--member", member, timeout=30)

    def etcd_start(self, member):
        """Starts member MEMBER again on its data (no-op if it runs); returns once its client port listens
        (it serves once a quorum is back: wait_etcd_healthy)."""
        self._script("etcd-start", "--member", member, timeout=60)

    # ------------------------------------------------------------ partitions

    def cut(self, n, links="fabric"):
        """Node N's links down at both ends: its fabric link (no etcd, no backends), with links="all" its client
        link too."""
        self._script("cut", "--node", n, "--links", links, timeout=30)

    def restore(self, n):
        """Node N's links up again with their addresses, routes and neighbours (idempotent)."""
        self._script("restore", "--node", n, timeout=30)

    def is_cut(self, n):
        return os.path.exists(os.path.join(self.run_dir, f"cut-{n}"))


class FleetCase(unittest.TestCase):
    """One fleet testbed for a test file (setUpClass), torn down whatever happens; veerds started through
    start_veerd() are stopped first."""
    prefix = None
    nodes = 3
    offloads = "xdp-safe"

    @classmethod
    def setUpClass(cls):
        cls.fleet = FleetTestbed(cls.prefix, cls.nodes)
        cls.veerds = []
        cls.veer_nodes = {}  # start_leading_fleet's veerds by node
        try:
            cls.fleet.up(cls.offloads)
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            for v in cls.veerds:
                try:
                    v.stop()
                except Exception as exc:  # every veerd stopped, the testbed down, whatever one did
                    print(f"  stopping a veerd: {exc}", flush=True)
        finally:
            cls.fleet.down()

    @classmethod
    def start_veerd(cls, n, text=None, timeout=20):
        """Writes node N's config (TEXT, default examples/testbed.yaml as node N), starts its veerd and returns
        it (stopped in tearDownClass)."""
        e2e.require_veer(cls)
        cls.fleet.write_node_config(n, text)
        veerd = cls.fleet.veerd(n)
        cls.veerds.append(veerd)
        veerd.start(timeout=timeout)
        return veerd

    def start_leading_fleet(self, config_of):
        """veerd on node 1 first (it leads), then on nodes 2 and 3, each on CONFIG_OF(n); once per class (the
        veerds are in self.veer_nodes). Returns when every node names node-1 the leader."""
        if self.veer_nodes:
            return
        for n in (1, 2, 3):
            self.veer_nodes[n] = self.start_veerd(n, config_of(n))
            if n == 1:
                e2e.wait_for("node 1 leads", lambda: self.fleet_view(1)["is_leader"], e2e.scaled(10), 0.1)
        for n in (1, 2, 3):
            e2e.wait_for(f"node {n} sees node-1 lead", lambda n=n: self.fleet_view(n)["leader"] == "node-1",
                         e2e.scaled(10), 0.1)

    def fleet_view(self, n):
        """The "fleet" object of node N's status."""
        answer = self.veer_nodes[n].request({"cmd": "status"})
        assert answer.get("ok"), answer
        return answer["result"]["fleet"]
