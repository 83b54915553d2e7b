"""qzoo's imports flow one way: no cycles, and each layer imports only its own layer and the ones below.

The graph is read from the source with ``ast``, imports inside functions included (a lazy import hides a cycle
from Python's import machinery, not from a reader). Importing ``a.b.c`` also runs ``a.b``'s ``__init__``, so it
counts as an import of ``a.b`` too, except from inside ``a.b`` itself.
"""

from __future__ import annotations

import ast
from pathlib import Path

import qzoo

ROOT = Path(qzoo.__file__).parent

# Bottom to top; a module belongs to the first layer with a prefix that matches it (``qzoo.envs`` also covers
# ``qzoo.envs.atari``). One sentence each:
LAYERS = [
    # settings: what a run is (its typed settings, the kind of env an id names, schedules); no other layer.
    ("settings", ["qzoo", "qzoo.config", "qzoo.resolve", "qzoo.env_ids", "qzoo.schedules"]),
    # parts: the pieces a loop is built from, each made from a Config alone.
    # (qzoo.guards: the checks where qzoo meets the machine, the file system and the user's files; qzoo.envs calls it.
    # qzoo.allocator: the memory allocator a training process runs on; the trainer, the peers and the CLI use it.
    # qzoo.precision: whether this CPU computes bfloat16 natively and what bf16 'auto' means; qzoo.conv_ops: the
    # Nature CNN's CPU kernels, qzoo.split_grads its weight gradients on a second thread, qzoo.second_thread that
    # thread and whether an update uses it; qzoo.native: the compiled MLP update loop that qzoo.fastpath calls.)
    ("parts", ["qzoo.envs", "qzoo.guards", "qzoo.allocator", "qzoo.precision", "qzoo.conv_ops", "qzoo.split_grads",
               "qzoo.second_thread", "qzoo.networks",
               "qzoo.losses", "qzoo.native", "qzoo.fastpath", "qzoo.fastpath_cnn",
               "qzoo.replay", "qzoo.evaluation", "qzoo.logger"]),
    # run files: the durable files of a run directory (lock, atomic writes, manifests, models, checkpoints, resume).
    ("run files", ["qzoo.checkpoint"]),
    # agents: the learners (deep agent, Q-table) and loading a trained one from its files or an export.
    ("agents", ["qzoo.agent", "qzoo.qtable", "qzoo.policy"]),
    # run outputs: what a running loop writes besides its model files (logs, progress, evaluations, videos).
    ("run outputs", ["qzoo.runlog", "qzoo.video"]),
    # trainers: the deep and the tabular training loops (and the deep loop's learner phases, in line or overlapped).
    ("trainers", ["qzoo.trainer", "qzoo.actor", "qzoo.tabular"]),
    # tools: commands built on trainers and trained runs (export, report, plots, tuning, benchmarks).
    ("tools", ["qzoo.export", "qzoo.report", "qzoo.plotting", "qzoo.tuning", "qzoo.bench",
                "qzoo.scaleout"]),
    # entry: the command line (what it accepts, and what each command does).
    ("entry", ["qzoo.cli", "qzoo.cli_parser", "qzoo.__main__"]),
]


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = ["qzoo", *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """{module: the qzoo modules it imports}, anywhere in its body."""
    files = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from .x import y
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                for alias in node.names:  # `from a import b` imports the module a.b if there is one, else a
                    targets.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in files else base)
        edges = set()
        for target in targets:
            if target not in files:
                continue
            edges.add(target)
            parts = target.split(".")
            for i in range(1, len(parts)):  # the packages it runs on the way in
                parent = ".".join(parts[:i])
                if not (name == parent or name.startswith(parent + ".")):
                    edges.add(parent)
        edges.discard(name)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)) is not None:
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)) is not None:
            return cycle
    return None


def layer_of(module: str) -> int | None:
    for index, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or (p != "qzoo" and module.startswith(p + ".")) for p in prefixes):
            return index
    return None


def test_graph_reader_sees_top_level_lazy_relative_and_package_imports(tmp_path):
    pkg = tmp_path / "qzoo"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from qzoo.sub.leaf import thing\n")
    (pkg / "b.py").write_text("def f():\n    import qzoo.a\n")
    (pkg / "sub" / "__init__.py").write_text("from .leaf import thing\n")
    (pkg / "sub" / "leaf.py").write_text("from qzoo import b\nthing = 1\n")
    graph = import_graph(pkg)
    assert graph["qzoo.a"] == {"qzoo.sub", "qzoo.sub.leaf"}  # the package's __init__ runs first
    assert graph["qzoo.b"] == {"qzoo.a"}  # an import inside a function counts
    assert graph["qzoo.sub"] == {"qzoo.sub.leaf"}  # relative
    assert graph["qzoo.sub.leaf"] == {"qzoo.b"}  # `from qzoo import b`: the module; its own packages are no edge
    assert find_cycle(graph) == ["qzoo.a", "qzoo.sub", "qzoo.sub.leaf", "qzoo.b", "qzoo.a"]
    del graph["qzoo.b"]
    assert find_cycle(graph) is None


def test_qzoo_has_no_import_cycles():
    graph = import_graph()
    assert "qzoo.trainer" in graph["qzoo.cli"]  # imported inside a function: the reader sees it
    assert {"qzoo.runlog", "qzoo.checkpoint"} <= graph["qzoo.trainer"]
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_every_module_has_a_layer_and_imports_only_downward():
    graph = import_graph()
    unplaced = sorted(m for m in graph if layer_of(m) is None)
    assert not unplaced, f"modules in no layer (add them to LAYERS): {unplaced}"
    upward = sorted(f"{m} ({LAYERS[layer_of(m)][0]}) imports {t} ({LAYERS[layer_of(t)][0]})"
                    for m, targets in graph.items() for t in targets if layer_of(t) > layer_of(m))
    assert not upward, "\n".join(upward)


def test_policy_loading_needs_neither_a_trainer_nor_the_exporter():
    graph = import_graph()

    def reachable(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for nxt in graph[todo.pop()] - seen:
                seen.add(nxt)
                todo.append(nxt)
        return seen

    assert not reachable("qzoo.policy") & {"qzoo.trainer", "qzoo.tabular", "qzoo.export", "qzoo.runlog"}
    assert not reachable("qzoo.config") - {"qzoo"}  # the schema imports nothing of qzoo
    assert not reachable("qzoo.resolve") - {"qzoo", "qzoo.config", "qzoo.env_ids"}
