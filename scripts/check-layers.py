#!/usr/bin/env python3
"""Checks that includes and imports point one way (docs/ARCHITECTURE.md, "Layers").

C++: loader/ (the LibTorch-free core) includes neither LibTorch nor the engine, and the engine uses
only its util/ and the public headers; in the engine,
online/ -> distributed/, probe/, selection/ -> model/ (probe/ may use model/, distributed/ may use
probe/ and model/, nothing points back; the abstract Collectives interface may be used by any layer); public headers
at the top of include/groupmates/ never include engine internals or private sources. Python: the
modules of python/groupmates import each other without a cycle. Prints every violation with its
file and line; exits 1 if there is one.

    scripts/check-layers.py [REPO]
"""
import ast
import os
import re
import sys

ROOT = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), ".."))
ENGINE_HEADER_LAYER = {  # include/groupmates/engine/<name>.h -> its layer
    "encoder": "model", "hashed_ngram_encoder": "model", "torchscript_encoder": "model",
    "influence_model": "model", "influence_trainer": "model", "model_registry": "model",
    "window_scorer": "model", "metrics": "model",
    "spherical_kmeans": "selection", "greedy_group": "selection", "batched_greedy": "selection", "selector": "selection",
    "oracle_prober": "probe", "rollout_policy": "probe", "label_buffer": "probe", "probe_scheduler": "probe",
    "collectives": "interface", "shared_probes": "distributed",
}
# Interfaces any engine layer may use: Collectives is an abstract, backend-neutral all-reduce /
# broadcast / all-gather (its c10d implementation lives in distributed/), which k-means (selection/)
# calls to keep centroids the same on every rank.
INTERFACES = {"interface"}
# What each layer may include (besides itself, the public headers and the loader core's utilities).
ALLOWED = {
    "model": set(),
    "selection": {"model"},
    "probe": {"model"},
    "distributed": {"model", "probe"},  # collectives across ranks (c10d) and the shared-probe exchange
    "online": {"model", "selection", "probe", "distributed"},
}
TORCH = re.compile(r"#\s*include\s*[<\"](torch|ATen|c10)/")
INCLUDE = re.compile(r"#\s*include\s*[<\"]([^>\"]+)[>\"]")

problems = []


def files(folder, exts):
    for dirpath, _, names in os.walk(os.path.join(ROOT, folder)):
        for n in sorted(names):
            if n.endswith(exts):
                yield os.path.join(dirpath, n)


def layer_of(path):
    rel = os.path.relpath(path, ROOT)
    parts = rel.split(os.sep)
    if parts[0] == "src" and len(parts) > 2:
        return parts[1]
    if parts[:3] == ["include", "groupmates", "engine"]:
        return ENGINE_HEADER_LAYER.get(os.path.splitext(parts[3])[0], "?")
    return None


def target_layer(inc):
    m = re.match(r"groupmates/engine/(\w+)\.h$", inc)
    if m:
        return ENGINE_HEADER_LAYER.get(m.group(1), "?")
    head = inc.split("/")[0]
    return head if head in ALLOWED else None


def check_cpp():
    for path in list(files("loader", (".h", ".cpp"))):
        for no, line in enumerate(open(path, encoding="utf-8"), 1):
            if TORCH.search(line):
                problems.append("%s:%d: the loader core includes LibTorch: %s" % (os.path.relpath(path, ROOT), no, line.strip()))
            m = INCLUDE.search(line)
            if m and (m.group(1).startswith("groupmates/engine/") or target_layer(m.group(1))):
                problems.append("%s:%d: the loader core includes the engine: %s" % (os.path.relpath(path, ROOT), no, m.group(1)))
    for path in list(files("src", (".h", ".cpp"))) + list(files("include/groupmates/engine", (".h",))):
        src = layer_of(path)
        for no, line in enumerate(open(path, encoding="utf-8"), 1):
            m = INCLUDE.search(line)
            if not m:
                continue
            if m.group(1).split("/")[0] in ("sources", "stream"):
                problems.append("%s:%d: the engine reaches into the loader core's %s (only util/ and public headers)"
                                % (os.path.relpath(path, ROOT), no, m.group(1)))
            dst = target_layer(m.group(1))
            if dst and dst != src and dst not in INTERFACES and dst not in ALLOWED.get(src, set()):
                problems.append("%s:%d: %s/ includes %s/ (%s): includes point online -> probe/selection -> model"
                                % (os.path.relpath(path, ROOT), no, src, dst, m.group(1)))
    for path in files("include/groupmates", (".h",)):
        if os.sep + "engine" + os.sep in path:
            continue
        for no, line in enumerate(open(path, encoding="utf-8"), 1):
            m = INCLUDE.search(line)
            if m and (m.group(1).startswith("groupmates/engine/") or target_layer(m.group(1))):
                problems.append("%s:%d: a public header includes an engine internal: %s" % (os.path.relpath(path, ROOT), no, m.group(1)))


def check_python():
    pkg = os.path.join(ROOT, "python", "groupmates")
    if not os.path.isdir(pkg):
        return
    mods = {os.path.splitext(n)[0] for n in os.listdir(pkg) if n.endswith(".py")}
    graph = {}
    for m in mods:
        tree = ast.parse(open(os.path.join(pkg, m + ".py"), encoding="utf-8").read())
        deps = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level >= 1:
                if node.module:
                    deps.add(node.module.split(".")[0])
                else:
                    deps.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("groupmates."):
                deps.add(node.module.split(".")[1])
            elif isinstance(node, ast.Import):
                deps.update(a.name.split(".")[1] for a in node.names if a.name.startswith("groupmates."))
        graph[m] = {d for d in deps if d in mods and d != m and m != "__init__"}
    state = {}

    def visit(m, stack):
        state[m] = 1
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                problems.append("python/groupmates: import cycle %s" % " -> ".join(stack + [m, d]))
            elif d not in state:
                visit(d, stack + [m])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])


check_cpp()
check_python()
for p in problems:
    print(p)
print("check-layers: %s" % ("%d problem(s)" % len(problems) if problems else "includes and imports point one way"))
sys.exit(1 if problems else 0)
