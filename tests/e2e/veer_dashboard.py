#!/usr/bin/env python3
"""veer's Grafana dashboard (packaging/grafana/veer-dashboard.json) read the way Grafana reads it: its panels
and their PromQL, its template variables, and the expressions with the variables and Grafana's built-in
intervals substituted as Grafana's Prometheus data source does. Python 3 stdlib only, no Grafana (it is not
in Debian): what can break in a dashboard is its queries, and those can be run.

Two users:
  * the unit check (ctest grafana_dashboard_check): the dashboard's shape (every panel and variable on the
    ${DS_PROMETHEUS} data source, no unknown variable) and every query parsed by `promtool check rules`:
        python3 veer_dashboard.py --promtool promtool packaging/grafana/veer-dashboard.json
  * tests/e2e/test_prometheus.py, which runs every query against a real Prometheus during a rollout.
"""
import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile

DATASOURCE_VARIABLE = "DS_PROMETHEUS"
DATASOURCE_UID = "${" + DATASOURCE_VARIABLE + "}"
# $name, ${name}, ${name:format}, [[name]]: Grafana's variable syntaxes.
VARIABLE = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\[\[(\w+)\]\]|\$(\w+)")
LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?:(.+?)\s*,\s*)?([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*$", re.S)
# Characters Grafana escapes in a value put into a Prometheus regex (prometheusRegularEscape): the escape is
# doubled because the regex sits inside a PromQL string literal.
REGEX_SPECIAL = re.compile(r"([$^*{}\[\]'+?.()|])")


def load(path):
    with open(path) as f:
        return json.load(f)


def panels(dashboard):
    """Every panel, those inside collapsed rows too, in order."""
    out = []
    for p in dashboard.get("panels", []):
        out.append(p)
        out.extend(p.get("panels", []))
    return [p for p in out if p.get("type") != "row"]


def queries(dashboard):
    """[(panel title, refId, expr)] of every panel target."""
    return [(p.get("title"), t.get("refId"), t.get("expr")) for p in panels(dashboard) for t in p.get("targets", [])]


def variables(dashboard):
    return dashboard.get("templating", {}).get("list", [])


def query_variables(dashboard):
    """The variables of type query, in dashboard order (a later one may use an earlier one)."""
    out = []
    for v in variables(dashboard):
        if v.get("type") != "query":
            continue
        q = v.get("query")
        out.append((v, q.get("query") if isinstance(q, dict) else q))
    return out


def parse_label_values(query):
    """label_values(SELECTOR, LABEL) or label_values(LABEL) -> (SELECTOR or None, LABEL); ValueError otherwise."""
    m = LABEL_VALUES.match(query or "")
    if not m:
        raise ValueError(f"not a label_values() query: {query!r}")
    return m.group(1), m.group(2)


def duration(seconds):
    """A PromQL duration: whole seconds as "Ns", else milliseconds."""
    if float(seconds).is_integer():
        return f"{int(seconds)}s"
    return f"{int(round(seconds * 1000))}ms"


def builtins(range_seconds, scrape_interval_seconds, max_data_points=1000):
    """Grafana's built-in interval variables for a dashboard range of RANGE_SECONDS on a data source whose
    scrape interval ("Scrape interval" setting, the floor of $__interval) is SCRAPE_INTERVAL_SECONDS:
    $__interval = range / max data points, not below the scrape interval (Grafana also rounds it to a
    "nice" value; whole seconds here); $__rate_interval = max($__interval + scrape interval,
    4 x scrape interval), the window that always holds enough samples for rate(). Also the step of the
    range query Grafana sends. Returns {name: text}, and "step" in seconds."""
    interval = max(float(scrape_interval_seconds), math.ceil(range_seconds / max_data_points))
    rate_interval = max(interval + scrape_interval_seconds, 4 * scrape_interval_seconds)
    return {"__interval": duration(interval), "__interval_ms": str(int(interval * 1000)),
            "__rate_interval": duration(rate_interval), "__range": duration(range_seconds),
            "__range_s": str(int(range_seconds)), "__range_ms": str(int(range_seconds * 1000)),
            "step": interval}


def _regex_escape(value):
    return REGEX_SPECIAL.sub(r"\\\\\1", value.replace("\\", "\\\\\\\\"))


def format_value(variable, values):
    """What Grafana's Prometheus data source puts for VARIABLE (its dashboard definition) holding VALUES:
    a multi-value or include-All variable becomes a regex alternation of escaped values ("(a|b)", or its
    allValue when All is chosen and it has one); a plain single-value variable its value as is."""
    if variable.get("multi") or variable.get("includeAll"):
        if len(values) == 1:
            return _regex_escape(values[0])
        return "(" + "|".join(_regex_escape(v) for v in values) + ")"
    return values[0] if values else ""


def interpolate(text, dashboard, selected, intervals):
    """TEXT with every variable substituted: SELECTED {variable name: [values]} for the dashboard's
    variables, INTERVALS (builtins()) for Grafana's own. An unknown variable raises KeyError."""
    defined = {v["name"]: v for v in variables(dashboard)}

    def sub(m):
        name = m.group(1) or m.group(3) or m.group(4)
        if name in intervals and name.startswith("__"):
            return intervals[name]
        if name == DATASOURCE_VARIABLE:
            return m.group(0)
        if name not in defined or name not in selected:
            raise KeyError(f"variable ${name} in {text!r} is not defined (or has no value)")
        return format_value(defined[name], selected[name])
    return VARIABLE.sub(sub, text)


def shape_problems(dashboard):
    """What is wrong with the dashboard's shape, as sentences (empty: nothing)."""
    problems = []
    if not isinstance(dashboard.get("schemaVersion"), int) or dashboard["schemaVersion"] < 36:
        problems.append(f"schemaVersion {dashboard.get('schemaVersion')!r}: want 36 or later (Grafana 9+)")
    ds = [v for v in variables(dashboard) if v.get("name") == DATASOURCE_VARIABLE]
    if len(ds) != 1 or ds[0].get("type") != "datasource" or ds[0].get("query") != "prometheus":
        problems.append(f"want one variable {DATASOURCE_VARIABLE} of type datasource, query prometheus")
    names = [v.get("name") for v in variables(dashboard)]
    if len(set(names)) != len(names):
        problems.append(f"variable names repeat: {names}")
    for v, q in query_variables(dashboard):
        if (v.get("datasource") or {}).get("uid") != DATASOURCE_UID:
            problems.append(f"variable {v['name']}: datasource is not {DATASOURCE_UID}")
        try:
            parse_label_values(q)
        except ValueError as exc:
            problems.append(f"variable {v['name']}: {exc}")
    ids = [p.get("id") for p in panels(dashboard)]
    if len(set(ids)) != len(ids) or None in ids:
        problems.append(f"panel ids missing or repeated: {ids}")
    for p in panels(dashboard):
        what = f"panel {p.get('id')} {p.get('title')!r}"
        if (p.get("datasource") or {}).get("uid") != DATASOURCE_UID:
            problems.append(f"{what}: datasource is not {DATASOURCE_UID}")
        if not p.get("gridPos"):
            problems.append(f"{what}: no gridPos")
        targets = p.get("targets") or []
        if not targets:
            problems.append(f"{what}: no query")
        refs = [t.get("refId") for t in targets]
        if len(set(refs)) != len(refs) or None in refs:
            problems.append(f"{what}: refIds missing or repeated: {refs}")
        for t in targets:
            if not (t.get("expr") or "").strip():
                problems.append(f"{what} {t.get('refId')}: empty expr")
            if (t.get("datasource") or {}).get("uid") not in (None, DATASOURCE_UID):
                problems.append(f"{what} {t.get('refId')}: datasource is not {DATASOURCE_UID}")
    known = {v.get("name") for v in variables(dashboard)} | {k for k in builtins(3600, 15) if k.startswith("__")}
    texts = [(f"panel {title!r} {ref}", expr or "") for title, ref, expr in queries(dashboard)]
    texts += [(f"variable {v.get('name')}", q or "") for v, q in query_variables(dashboard)]
    for what, text in texts:
        for m in VARIABLE.finditer(text):
            name = m.group(1) or m.group(3) or m.group(4)
            if name not in known:
                problems.append(f"{what}: unknown variable ${name}")
    return problems


def expressions_for_promtool(dashboard, intervals=None):
    """Every PromQL expression of the dashboard (panel targets, and the selectors of the label_values
    variables), substituted with a placeholder value per variable: [(what, expr)]."""
    intervals = intervals or builtins(3600, 15)
    selected = {v["name"]: ["placeholder"] for v in variables(dashboard)}
    out = [(f"panel {title!r} {ref}", interpolate(expr or "", dashboard, selected, intervals))
           for title, ref, expr in queries(dashboard)]
    for v, q in query_variables(dashboard):
        selector, _label = parse_label_values(q)
        if selector:
            out.append((f"variable {v['name']}", interpolate(selector, dashboard, selected, intervals)))
    return out


def promtool_check(dashboard, promtool="promtool"):
    """Every expression parsed by `promtool check rules` (each written as a recording rule into a temporary
    file): (ok, promtool's output)."""
    exprs = expressions_for_promtool(dashboard)
    rules = {"groups": [{"name": "veer-dashboard", "rules": [
        {"record": f"veer_dashboard_query_{i}", "expr": e} for i, (_what, e) in enumerate(exprs)]}]}
    with tempfile.NamedTemporaryFile("w", suffix=".yml", prefix="veer-dashboard-") as f:
        json.dump(rules, f)  # JSON is YAML
        f.flush()
        proc = subprocess.run([promtool, "check", "rules", f.name], capture_output=True, text=True)
    listing = "\n".join(f"  veer_dashboard_query_{i}: {what}: {e}" for i, (what, e) in enumerate(exprs))
    return proc.returncode == 0, proc.stdout + proc.stderr + "\nexpressions:\n" + listing


def main():
    ap = argparse.ArgumentParser(description="Check a veer Grafana dashboard's shape and PromQL (promtool).")
    ap.add_argument("dashboard")
    ap.add_argument("--promtool", default="promtool")
    args = ap.parse_args()
    try:
        dashboard = load(args.dashboard)
    except (OSError, ValueError) as exc:
        print(f"{args.dashboard}: {exc}", file=sys.stderr)
        return 1
    problems = shape_problems(dashboard)
    for p in problems:
        print(f"{args.dashboard}: {p}", file=sys.stderr)
    if problems:
        print(f"{os.path.basename(args.dashboard)}: FAILED", file=sys.stderr)
        return 1
    ok, output = promtool_check(dashboard, args.promtool)
    print(output)
    print(f"{os.path.basename(args.dashboard)}: {len(panels(dashboard))} panels, {len(queries(dashboard))} queries, "
          f"{len(query_variables(dashboard))} query variables: "
          f"{'ok' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
