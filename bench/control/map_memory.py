#!/usr/bin/env python3
"""Flow-table memory of a running veerd, from the kernel's own accounting (issue 5 item 3).

  map_memory.py --pin PIN_PATH [--pid VEERD_PID]

Every map veerd created: the maps pinned under PIN_PATH/maps, plus (with --pid) every map veerd holds an fd
of (/proc/PID/fdinfo "map_id:"; that adds its unpinned maps such as .rodata). For each: `bpftool -j map show`,
whose "bytes_memlock" is the kernel's map_mem_usage() on 6.x (what the map really costs in kernel memory).
Per flow = sum of bytes_memlock of the per-flow maps (FLOW_MAPS below) / their max_entries; printed at the
configured size (max_entries as created, i.e. node.flow_table_size) and scaled to 1,048,576 flows.

The LRU hash maps are preallocated (an LRU hash cannot be BPF_F_NO_PREALLOC): the memory is the same empty
or full, so no flows need inserting. The script checks the flag and says so for each per-flow map.
Prints a table and `RESULT {json}` lines (run.sh collects them). Needs root and bpftool.
"""
import argparse
import json
import os
import subprocess
import sys

# The maps holding one entry per flow. Edit this list when the flow maps change (e.g. veer_flows and
# veer_nat_rev merged into one map): the per-flow figure is derived from it.
FLOW_MAPS = ["veer_flows"]
ONE_MILLION_FLOWS = 1048576
TARGET_BYTES_PER_FLOW = 128
BPF_F_NO_PREALLOC = 1
PREALLOCATED_TYPES = {"lru_hash", "lru_percpu_hash", "array", "percpu_array"}


def bpftool(*args):
    proc = subprocess.run(["bpftool", "-j", "map", "show", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=30)
    if proc.returncode != 0:
        raise SystemExit(f"bpftool map show {' '.join(args)}: {proc.stderr.strip()}")
    return json.loads(proc.stdout)


def result(figure, value, unit, op=None, target=None):
    r = {"figure": figure, "value": value, "unit": unit}
    if op:
        r.update(op=op, target=target)
    print("RESULT " + json.dumps(r), flush=True)


def maps_of_pid(pid):
    ids = set()
    fddir = f"/proc/{pid}/fdinfo"
    for fd in os.listdir(fddir):
        try:
            with open(os.path.join(fddir, fd)) as f:
                for line in f:
                    if line.startswith("map_id:"):
                        ids.add(int(line.split()[1]))
        except OSError:
            continue  # fd closed meanwhile
    return ids


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pin", required=True, help="veerd's node.pin_path")
    ap.add_argument("--pid", type=int, help="veerd's pid (adds the maps it holds that are not pinned)")
    args = ap.parse_args()

    maps_dir = os.path.join(args.pin, "maps")
    if not os.path.isdir(maps_dir):
        raise SystemExit(f"{maps_dir}: not a directory (is veerd running with pin_path {args.pin}?)")
    by_id = {}
    pinned_name = {}
    for entry in sorted(os.listdir(maps_dir)):
        info = bpftool("pinned", os.path.join(maps_dir, entry))
        by_id[info["id"]] = info
        pinned_name[info["id"]] = entry
    if args.pid:
        for map_id in sorted(maps_of_pid(args.pid) - set(by_id)):
            by_id[map_id] = bpftool("id", str(map_id))

    rows = []
    for map_id, info in sorted(by_id.items(), key=lambda kv: -kv[1].get("bytes_memlock", 0)):
        # bpftool shows the kernel's 15-character name; the pin name is the full one.
        name = pinned_name.get(map_id, info.get("name", "?"))
        rows.append((name, info))
    total = sum(info.get("bytes_memlock", 0) for _, info in rows)

    print(f"maps of veerd (pin {args.pin}{', pid %d' % args.pid if args.pid else ''}): {len(rows)}, "
          f"{total / 2**20:.1f} MiB kernel memory (bytes_memlock)")
    print(f"  {'map':<24} {'type':<16} {'max_entries':>11} {'bytes_memlock':>14} {'B/entry':>9}  pinned")
    for name, info in rows:
        entries = info.get("max_entries", 0)
        mem = info.get("bytes_memlock", 0)
        per = mem / entries if entries else 0
        print(f"  {name:<24} {info.get('type', '?'):<16} {entries:>11} {mem:>14} {per:>9.1f}  "
              f"{'yes' if info['id'] in pinned_name else 'no'}")
        result(f"map bytes {name}", mem, "B")

    flow_rows = [(name, info) for name, info in rows if name in FLOW_MAPS]
    missing = sorted(set(FLOW_MAPS) - {name for name, _ in flow_rows})
    if missing:
        print(f"  note: per-flow maps {missing} listed in FLOW_MAPS are not among veerd's maps (merged or renamed? "
              f"edit FLOW_MAPS in {__file__})")
    if not flow_rows:
        raise SystemExit("no per-flow map found: nothing to measure")
    per_flow = 0.0
    configured = None
    for name, info in flow_rows:
        entries = info["max_entries"]
        per_flow += info["bytes_memlock"] / entries
        configured = entries if configured is None else min(configured, entries)
        prealloc = info["type"] in PREALLOCATED_TYPES and not (info.get("flags", 0) & BPF_F_NO_PREALLOC)
        print(f"  {name}: {info['type']}, flags {info.get('flags', 0):#x}: "
              f"{'preallocated: memory is the same empty or full' if prealloc else 'NOT preallocated: memory grows with entries, this figure is the empty map'}")
    at_configured = sum(info["bytes_memlock"] for _, info in flow_rows)
    print(f"  per flow ({' + '.join(n for n, _ in flow_rows)}): {per_flow:.1f} B/flow; at the configured "
          f"{configured} entries: {at_configured / 2**20:.1f} MiB; at {ONE_MILLION_FLOWS} flows: "
          f"{per_flow * ONE_MILLION_FLOWS / 2**20:.1f} MiB")
    result("flow table bytes per flow", round(per_flow, 1), "B", "<=", TARGET_BYTES_PER_FLOW)
    result("flow table configured entries", configured, "count")
    result("flow table MiB at configured size", round(at_configured / 2**20, 1), "MiB")
    result("flow table MiB at 1M flows", round(per_flow * ONE_MILLION_FLOWS / 2**20, 1), "MiB", "<=",
           TARGET_BYTES_PER_FLOW * ONE_MILLION_FLOWS / 2**20)
    result("all veerd maps MiB", round(total / 2**20, 1), "MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
