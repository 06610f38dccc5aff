"""The README and docs cite only what exists: repository paths, links, `python -m ftlab.X`
modules, `ftlab.x.y` names and config keys."""
import ast
import pathlib
import re

import pytest

from configs import default

REPO = pathlib.Path(__file__).resolve().parent.parent
DOCS = sorted([REPO / "README.md", REPO / "ARCHITECTURE.md", REPO / "experiments" / "README.md",
               *(REPO / "docs").glob("*.md")])
# A path from the repository root: not inside a longer path (~/.cache/ftlab/x, a URL).
PATH = re.compile(r"(?<![\w./~$-])((?:configs|experiments|ftlab|tests|docs|\.ci)/[\w./-]*\w)")
LINK = re.compile(r"\]\(([^)#\s]+)")
MODULE = re.compile(r"python -m (ftlab(?:\.\w+)+)")
NAME = re.compile(r"`(ftlab(?:\.\w+)+)`")
# A config key as the docs write it: `data.augment`, `config.data.augment`, `--config.data.augment=x`.
KEY = re.compile(r"`(?:--)?(?:config\.)?((?:model|data|strategy|optimizer|train)\.\w+)(?:=[^`]*)?`")


def _doc_ids():
  return [str(p.relative_to(REPO)) for p in DOCS]


def _declared_keys() -> set:
  return {f"{section}.{key}" for section, fields in default.get_config().to_dict().items()
          if isinstance(fields, dict) for key in fields}


def _module_file(dotted: str):
  """ftlab/a/b.py or ftlab/a/b/__init__.py for 'ftlab.a.b', else None."""
  base = REPO.joinpath(*dotted.split("."))
  for candidate in (base.with_suffix(".py"), base / "__init__.py"):
    if candidate.is_file():
      return candidate
  return None


def _top_level_names(path: pathlib.Path) -> set:
  names = set()
  for node in ast.parse(path.read_text()).body:
    if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
      names.add(node.name)
    elif isinstance(node, ast.Assign):
      names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
      names.add(node.target.id)
    elif isinstance(node, (ast.Import, ast.ImportFrom)):
      names.update((a.asname or a.name).split(".")[0] for a in node.names)
  return names


def name_exists(dotted: str) -> bool:
  """'ftlab.models.MODELS': the longest module prefix's file defines the next name."""
  parts = dotted.split(".")
  for n in range(len(parts), 0, -1):
    path = _module_file(".".join(parts[:n]))
    if path is not None:
      return n == len(parts) or parts[n] in _top_level_names(path)
  return False


def test_the_checker_finds_what_is_missing():
  assert PATH.findall("see `configs/demo.py:model=x` and ~/.cache/ftlab/weights") == [
      "configs/demo.py"]
  assert name_exists("ftlab.models.MODELS") and name_exists("ftlab.data.transforms")
  assert not name_exists("ftlab.models.NO_SUCH") and not name_exists("ftlab.nowhere")
  assert KEY.findall("`--config.data.root=/x`, `train.ema_decay`, `model.apply`") == [
      "data.root", "train.ema_decay", "model.apply"]


@pytest.mark.parametrize("doc", DOCS, ids=_doc_ids())
def test_every_cited_path_exists(doc):
  text = doc.read_text()
  missing = [p for p in PATH.findall(text) if not (REPO / p).exists()]
  assert not missing, f"{doc.name} cites paths that do not exist: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=_doc_ids())
def test_every_relative_link_resolves(doc):
  links = [l for l in LINK.findall(doc.read_text()) if not re.match(r"\w+://", l)]
  missing = [l for l in links if not (doc.parent / l).exists()]
  assert not missing, f"{doc.name} links to files that do not exist: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=_doc_ids())
def test_every_python_m_command_names_a_module(doc):
  missing = [m for m in MODULE.findall(doc.read_text()) if _module_file(m) is None]
  assert not missing, f"{doc.name} runs modules that do not exist: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=_doc_ids())
def test_every_ftlab_name_exists(doc):
  missing = [n for n in NAME.findall(doc.read_text()) if not name_exists(n)]
  assert not missing, f"{doc.name} names what ftlab does not define: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=_doc_ids())
def test_every_config_key_is_declared(doc):
  declared = _declared_keys()
  missing = [k for k in KEY.findall(doc.read_text()) if k not in declared]
  assert not missing, f"{doc.name} names config keys configs/default.py lacks: {missing}"


def test_the_readme_is_a_guide_not_a_notebook():
  lines = (REPO / "README.md").read_text().splitlines()
  assert len(lines) <= 250, f"README.md has {len(lines)} lines; depth goes to docs/"
