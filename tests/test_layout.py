"""The package layout ARCHITECTURE.md describes: dependencies between ftlab's packages, and
between its modules, point one way."""
import ast
import pathlib

import pytest

FTLAB = pathlib.Path(__file__).resolve().parent.parent / "ftlab"


def _unit(module: str) -> str:
  """'ftlab.training.trainer' -> 'training'; a top-level module ('ftlab.main') is its own unit."""
  parts = module.split(".")
  return parts[1] if len(parts) > 1 else ""


def _module_files(root: pathlib.Path) -> dict:
  """{dotted module name: its file}; a package is its __init__.py ('ftlab.training')."""
  modules = {}
  for path in root.rglob("*.py"):
    parts = path.relative_to(root.parent).with_suffix("").parts
    modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
  return modules


def _imported(node, module: str, is_package: bool, modules: dict) -> set:
  """The modules of `modules` that the import statement `node` in `module` loads by name:
  `from p import m` is the module p.m when there is one, else p itself."""
  def known(name):  # the module itself, or the package holding the imported attribute
    while name and name not in modules:
      name = name.rpartition(".")[0]
    return name

  if isinstance(node, ast.Import):
    return {known(a.name) for a in node.names}
  if not isinstance(node, ast.ImportFrom):
    return set()
  base = node.module or ""
  if node.level:  # relative: from the module's package, one level up per extra dot
    package = module.split(".")[:len(module.split(".")) - (node.level - is_package)]
    base = ".".join(package + ([base] if base else []))
  return {f"{base}.{a.name}" if f"{base}.{a.name}" in modules else known(base)
          for a in node.names}


def module_imports(root: pathlib.Path = FTLAB) -> dict:
  """{module: {modules it imports}} over every import of `root`'s modules in every file, nested
  ones and those under `if TYPE_CHECKING:` too (a type-only import is still a dependency)."""
  modules = _module_files(root)
  graph = {}
  for module, path in modules.items():
    targets = graph.setdefault(module, set())
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
      targets |= _imported(node, module, path.name == "__init__.py", modules)
    targets -= {module, ""}
  return graph


def package_imports(modules: dict) -> dict:
  """{package: {packages it imports}} from a module graph (entry points may import anything)."""
  graph = {}
  for module, targets in modules.items():
    unit = _unit(module)
    if unit and (FTLAB / unit).is_dir():
      graph.setdefault(unit, set()).update(_unit(t) for t in targets if _unit(t))
      graph[unit].discard(unit)
  return graph


def find_cycle(graph: dict) -> list:
  """A list of nodes (packages or modules) closing an import cycle ([] when there is none)."""
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


def test_module_imports_see_type_checking_relative_and_from_package_imports(tmp_path):
  pkg = tmp_path / "pkg"
  (pkg / "sub").mkdir(parents=True)
  (pkg / "__init__.py").write_text("")
  (pkg / "sub" / "__init__.py").write_text("from pkg.sub import a\n")
  (pkg / "sub" / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                    "  from pkg.sub.b import B\n")
  (pkg / "sub" / "b.py").write_text("from . import a\nfrom .. import top\nfrom pkg import sub\n")
  (pkg / "top.py").write_text("import pkg.sub.b\nfrom pkg.sub import NAME\n")
  assert module_imports(pkg) == {
      "pkg": set(), "pkg.sub": {"pkg.sub.a"}, "pkg.sub.a": {"pkg.sub.b"},
      "pkg.sub.b": {"pkg.sub.a", "pkg.top", "pkg.sub"}, "pkg.top": {"pkg.sub.b", "pkg.sub"}}
  assert find_cycle(module_imports(pkg)) == ["pkg.sub", "pkg.sub.a", "pkg.sub.b", "pkg.sub"]


@pytest.fixture(scope="module")
def modules() -> dict:
  return module_imports()


@pytest.fixture(scope="module")
def graph(modules) -> dict:
  return package_imports(modules)


def test_packages_import_each_other_one_way(graph):
  assert {"training", "evaluation", "models", "data", "parallel"} <= set(graph)
  assert find_cycle(graph) == [], f"import cycle between ftlab packages: {find_cycle(graph)}"


def test_modules_import_each_other_one_way(modules):
  assert {"ftlab.training.trainer", "ftlab.training.results", "ftlab.models"} <= set(modules)
  assert "ftlab.training.results" in modules["ftlab.training.trainer"]
  assert find_cycle(modules) == [], f"import cycle between ftlab modules: {find_cycle(modules)}"


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


# Names that model modules may share, and only model modules: each module is one family, its
# building blocks named as in the PyTorch original it mirrors and read with the module's name
# (`resnet.Bottleneck`, `convnext.Stage`); a family's size table is its `Variant`.
MODEL_PARTS = {
    "Block": "convnext's CNBlock body, vit_timm's transformer block",
    "Blocks": "efficientnet_lite's `_blocks`, vit_timm's `blocks` (the originals' ModuleLists)",
    "Bottleneck": "resnet's (torchvision) and resnest's (timm) bottleneck blocks",
    "Downsample": "the shortcut or downsampling layers of resnet, resnest and convnext",
    "Stage": "convnext's and resnest's stage Sequentials",
    "Stem": "convnext's and resnest's stems",
    "Variant": "vit's and efficientnet_lite's size tables",
    "VisionTransformer": "vit (torchvision's layout) and vit_timm (timm's), as the originals name it",
}


def test_no_two_classes_share_a_name_outside_model_building_blocks():
  shared = {name: modules for name, modules in _class_names().items() if len(modules) > 1}
  clashes = {name: modules for name, modules in shared.items()
             if name not in MODEL_PARTS or not all(m.startswith("ftlab.models.") for m in modules)}
  assert not clashes, f"classes named alike in ftlab (rename one): {clashes}"
  assert set(MODEL_PARTS) <= set(shared), \
      f"MODEL_PARTS names no longer shared (remove them): {set(MODEL_PARTS) - set(shared)}"
