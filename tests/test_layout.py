"""The package layout ARCHITECTURE.md describes: dependencies between ftlab's packages point one way."""
import ast
import pathlib

import pytest

FTLAB = pathlib.Path(__file__).resolve().parent.parent / "ftlab"


def _unit(module: str) -> str:
  """'ftlab.training.trainer' -> 'training'; a top-level module ('ftlab.main') is its own unit."""
  parts = module.split(".")
  return parts[1] if len(parts) > 1 else ""


def package_imports() -> dict:
  """{package: {packages it imports}} over every ftlab import in every file (nested ones too)."""
  graph = {}
  for path in FTLAB.rglob("*.py"):
    relative = path.relative_to(FTLAB.parent).with_suffix("")
    unit = _unit(".".join(relative.parts))
    if unit.endswith("__init__") or not (FTLAB / unit).is_dir():
      continue  # entry points (ftlab/main.py, ...) may import anything
    targets = graph.setdefault(unit, set())
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
      if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
      elif isinstance(node, ast.ImportFrom) and node.module == "ftlab":
        names = [f"ftlab.{a.name}" for a in node.names]  # from ftlab import training
      elif isinstance(node, ast.ImportFrom) and not node.level:
        names = [node.module or ""]
      else:
        names = []
      targets.update(_unit(n) for n in names if n.startswith("ftlab."))
    targets.discard(unit)
  return graph


def find_cycle(graph: dict) -> list:
  """A list of packages closing an import cycle ([] when there is none)."""
  state, stack = {}, []

  def visit(node):
    state[node] = "open"
    stack.append(node)
    for nxt in sorted(graph.get(node, ())):
      if state.get(nxt) == "open":
        return stack[stack.index(nxt):] + [nxt]
      if nxt not in state:
        found = visit(nxt)
        if found:
          return found
    state[node] = "done"
    stack.pop()
    return []

  for node in sorted(graph):
    if node not in state:
      found = visit(node)
      if found:
        return found
  return []


def test_find_cycle_sees_a_cycle():
  assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
  assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []


@pytest.fixture(scope="module")
def graph() -> dict:
  return package_imports()


def test_packages_import_each_other_one_way(graph):
  assert {"training", "evaluation", "models", "data", "parallel"} <= set(graph)
  assert find_cycle(graph) == [], f"import cycle between ftlab packages: {find_cycle(graph)}"


@pytest.mark.parametrize("entry_point", ["main", "sweep", "study", "report", "evaluate"])
def test_no_package_imports_an_entry_point(graph, entry_point):
  for package, imported in graph.items():
    assert entry_point not in imported, f"ftlab/{package} imports the entry point ftlab.{entry_point}"


def _class_names() -> dict:
  """{class name: [modules defining it]} over every ftlab module (top-level classes)."""
  names = {}
  for path in FTLAB.rglob("*.py"):
    module = ".".join(path.relative_to(FTLAB.parent).with_suffix("").parts)
    for node in ast.parse(path.read_text(), str(path)).body:
      if isinstance(node, ast.ClassDef):
        names.setdefault(node.name, []).append(module)
  return names


@pytest.mark.parametrize("package", ["studies", "sweeps", "reports"])
def test_no_class_of_the_run_management_packages_shares_its_name(package):
  shared = {name: modules for name, modules in _class_names().items()
            if len(modules) > 1 and any(m.startswith(f"ftlab.{package}.") for m in modules)}
  assert not shared, f"classes named alike elsewhere in ftlab: {shared}"
