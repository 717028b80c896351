#!/usr/bin/env python3
"""Fleet abort: a gate breach -> canary weight 0 applied on every node (issue 11, "Speed"), on the fleet testbed
(scripts/testbed.sh up --fleet 3, a real three-member etcd) with three veerds and real traffic from every
node's clients.

  abort.py --veerd PATH --veerctl PATH [--reps 10] [--rate 100] [--prefix vflab]

A canary rollout (50 %, pause until promoted, 100 %) with a 1 s interval and failure_limit 0 on a kernel
error_rate gate (max 0.001, min_samples 30) judged by the leader (node 1) on the fleet's summed counters.
Each repetition: wait until every node applies canary 50 % and the gate has passed, then at t0 set the
canary's error rate to 100 % (knobs_timed, from inside the canary's namespace) and poll every node's status
every 10 ms until all three apply canary 0 (t_all). From the leader's abort event (its time is the tick that
took the decision, the end of an interval) and the tick grid: the breaching interval ends at the first tick
after t0, end = t_decision - floor((t_decision - t0) / interval) * interval. Figures:
  after the breaching interval   t_all - end (target: <= interval + 200 ms)
  decision to every node         t_all - t_decision (the leader's txn, the watch, three flips)
  breach to every node           t_all - t0
Reference, measured in the same run: `veerctl weights` on node 2 to the new weights applied on every node
(the same etcd write, watch and flips, no gate), the same polling. Prints RESULT lines; the testbed and the
veerds are torn down on every exit path.
"""
import argparse
import datetime
import math
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path[:0] = [os.path.join(SOURCE_DIR, "tests", "e2e"), os.path.join(SOURCE_DIR, "bench", "control")]
import veer_e2e as e2e  # noqa: E402
import veer_fleet  # noqa: E402
from breach import prepare, result  # noqa: E402  (shared by the testbed bench scripts)

INTERVAL_S = 1.0
ROLLOUT = """      strategy: canary
      canary: canary
      interval: 1s
      steps: [ {set_weight: 50}, {pause: {}}, {set_weight: 100} ]
      gates:
        - { metric: error_rate, source: kernel, max: 0.001, min_samples: 30 }
      failure_limit: 0
"""
NODES = (1, 2, 3)


def canary_applied(veerd):
    return e2e.applied(veerd.service_status("ranker"))["canary"]


def wait_all(veerds, weight, timeout):
    """Polls every node every 10 ms until each applies canary WEIGHT; returns the time the last one did."""
    deadline = time.time() + timeout
    pending = set(veerds)
    while pending and time.time() < deadline:
        for n in sorted(pending):
            if canary_applied(veerds[n]) == weight:
                pending.discard(n)
        if pending:
            time.sleep(0.01)
    if pending:
        raise AssertionError(f"nodes {sorted(pending)} not at canary {weight} within {timeout} s")
    return time.time()


def event_time(event):
    """An event's time (RFC 3339 with milliseconds, UTC) as Unix seconds."""
    return datetime.datetime.strptime(event["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def summary(name, values_s):
    ms = sorted(v * 1000 for v in values_s)
    return f"{name}: median {statistics.median(ms):.0f} ms, max {ms[-1]:.0f} ms"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--veerd", required=True)
    ap.add_argument("--veerctl", required=True)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--rate", type=int, default=100, help="requests per second from each node's client")
    ap.add_argument("--prefix", default="vflab", help="testbed prefix (namespaces PREFIX-*)")
    args = ap.parse_args()
    if not 1 <= args.reps <= 50:
        raise SystemExit("--reps: want 1..50")
    if not 40 <= args.rate <= 1000:
        raise SystemExit("--rate: want 40..1000 (the gate needs >= 30 canary answers per interval)")
    prepare("abort.py", args.veerd, args.veerctl)

    fleet = veer_fleet.FleetTestbed(args.prefix)
    veerds, traffic = {}, []
    after_interval, decision_to_all, breach_to_all, reference = [], [], [], []
    try:
        fleet.up()
        for n in NODES:
            text = veer_fleet.fleet_config(e2e.ranker_config(ROLLOUT, metrics_url=False), fleet.prefix, n)
            fleet.write_node_config(n, text)
            veerds[n] = fleet.veerd(n)
            veerds[n].start()
            if n == 1:  # node 1 leads: the first to stand
                e2e.wait_for("node 1 leads", lambda: veerds[1].request({"cmd": "status"})["result"]["fleet"]
                             ["is_leader"], 10, 0.1)
        duration = 60 + 12 * args.reps  # bounded whatever happens
        traffic = [fleet.rate_client(n, "--dst", e2e.VIP4, "--port", 80, "--src-range", f"10.0.{n}.11-10.0.{n}.60",
                                     "--rate", args.rate, "--duration", duration) for n in NODES]

        # The reference: weights from node 2 to applied on all three (then back), as many times as aborts.
        for rep in range(args.reps):
            for weight in (50.0, 0.0):
                t0 = time.time()
                rc, answer = veerds[2].ctl_json("weights", "ranker", f"blue={100 - weight:g}", f"canary={weight:g}")
                if not answer.get("ok"):
                    raise AssertionError(f"weights: {answer}")
                t_all = wait_all(veerds, weight, 10)
                if weight == 50.0:
                    reference.append(t_all - t0)
        print(f"  reference: {summary('weights on node 2 -> applied on all three', reference)}", flush=True)

        for rep in range(args.reps):
            for attempt in range(3):
                since = veerds[1].service_status("ranker")["rollout"]["events_next"]
                veerds[3].rollout("ranker", "start" if rep == 0 and attempt == 0 else "retry")
                try:
                    def ready():
                        r = veerds[1].service_status("ranker")["rollout"]
                        return r["phase"] == "WaitingForPromotion" and r["gates"][0]["last_result"] == "Successful"
                    e2e.wait_for("the gate passed at 50 %", ready, 20, 0.05)
                    wait_all(veerds, 50.0, 10)
                    break
                except AssertionError:
                    aborts = [e for e in veerds[1].events("ranker", since) if e["kind"] == "abort"]
                    if not aborts or attempt == 2:
                        raise
                    print(f"  rep {rep + 1}: aborted before the breach ({aborts[-1]['message']}); retrying",
                          flush=True)
                    time.sleep(1.5 * INTERVAL_S)
            # Spread the breaches over the tick phase (as bench/control/breach.py does).
            time.sleep(INTERVAL_S * (rep + 0.5) / args.reps)
            since = veerds[1].service_status("ranker")["rollout"]["events_next"]
            t0, _ = fleet.node(1).knobs_timed("canary", {"error_rate": 1.0})
            t_all = wait_all(veerds, 0.0, 15)
            aborts = [e for e in veerds[1].events("ranker", since) if e["kind"] == "abort"]
            if len(aborts) != 1:
                raise AssertionError(f"expected one abort event, got {aborts}")
            t_decision = event_time(aborts[0])
            end = t_decision - math.floor((t_decision - t0) / INTERVAL_S) * INTERVAL_S
            after_interval.append(t_all - end)
            decision_to_all.append(t_all - t_decision)
            breach_to_all.append(t_all - t0)
            print(f"  rep {rep + 1}/{args.reps}: breach -> all three at 0: {(t_all - t0) * 1000:.0f} ms; after the "
                  f"breaching interval ended: {(t_all - end) * 1000:.0f} ms; after the decision: "
                  f"{(t_all - t_decision) * 1000:.0f} ms", flush=True)
            fleet.node(1).knobs("canary", "reset=true")
            time.sleep(1.5 * INTERVAL_S)  # an interval or two with the canary healed before the retry
    finally:
        for t in traffic:
            t.kill()
        try:
            for v in veerds.values():
                v.stop()
        finally:
            fleet.down()

    budget_ms = INTERVAL_S * 1000 + 200
    print(f"fleet abort over {len(after_interval)} rollouts (3 nodes, interval {INTERVAL_S:.0f} s, failure_limit 0):")
    for name, values in (("after the breaching interval ended", after_interval),
                         ("after the leader's decision", decision_to_all), ("after the breach", breach_to_all),
                         ("reference: weights on node 2", reference)):
        print(f"  {summary(name, values)}")
    ratio = statistics.median(decision_to_all) / statistics.median(reference)
    print(f"  decision -> all three / reference (median): {ratio:.2f}x; target: <= {budget_ms:.0f} ms after the "
          f"breaching interval ends")
    result("fleet abort after the breaching interval, median", round(statistics.median(after_interval) * 1000, 1),
           "ms", "<=", budget_ms)
    result("fleet abort after the breaching interval, max", round(max(after_interval) * 1000, 1), "ms", "<=",
           budget_ms)
    result("fleet abort decision to every node, median", round(statistics.median(decision_to_all) * 1000, 1), "ms")
    result("weights to every node (reference), median", round(statistics.median(reference) * 1000, 1), "ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
