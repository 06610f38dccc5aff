"""bench_gpu.py's table: one row per (model, dtype) from its jobs' results, as markdown and JSON.

A job is anything with `model`, `dtype` and `side` (one of SIDES) attributes
(bench_gpu's `Job`); its result holds `images_per_s`, `peak_mb`,
`compile_s` (ftlab) or `first_step_s` (PyTorch), or a `skipped` / `error`
note, which the markdown lists under the table.
"""
import dataclasses
import json
from typing import Dict, List


SIDES = ("ftlab", "torch_eager", "torch_compile")


def note_of(result: dict) -> str:
  return result.get("skipped") or result.get("error") or ""


def summarize(results: Dict) -> List[dict]:
  """One row per (model, dtype), in the order first planned, with each side's numbers."""
  rows: Dict[tuple, dict] = {}
  for job, r in results.items():
    row = rows.setdefault((job.model, job.dtype), {"model": job.model, "dtype": job.dtype,
                                                    "notes": []})
    row[f"{job.side}_images_per_s"] = r.get("images_per_s")
    row[f"{job.side}_peak_mb"] = r.get("peak_mb")
    row[f"{job.side}_first_s"] = r.get("compile_s", r.get("first_step_s"))
    if note_of(r):
      row["notes"].append(f"{job.side}: {note_of(r)}")
  for row in rows.values():
    torch_sides = [s for s in SIDES[1:] if row.get(f"{s}_images_per_s")]
    best = max(torch_sides, key=lambda s: row[f"{s}_images_per_s"], default=None)
    row["best_torch"] = best
    row["best_torch_images_per_s"] = row[f"{best}_images_per_s"] if best else None
    ftlab = row.get("ftlab_images_per_s")
    row["ratio"] = ftlab / row["best_torch_images_per_s"] if ftlab and best else None
  return list(rows.values())


COLUMNS = (  # (key, markdown header, format)
    ("model", "model", ""), ("dtype", "dtype", ""),
    ("ftlab_images_per_s", "ftlab img/s", ".0f"),
    ("torch_eager_images_per_s", "PyTorch eager img/s", ".0f"),
    ("torch_compile_images_per_s", "torch.compile img/s", ".0f"),
    ("ratio", "ftlab / best PyTorch", ".2f"),
    ("ftlab_peak_gib", "ftlab peak GiB", ".2f"),
    ("torch_eager_peak_gib", "eager peak GiB", ".2f"),
    ("torch_compile_peak_gib", "compile peak GiB", ".2f"),
    ("ftlab_first_s", "ftlab compile s", ".0f"),
    ("torch_compile_first_s", "torch.compile 1st step s", ".0f"))


def cell(value, fmt: str) -> str:
  if value is None:
    return "-"
  return format(value, fmt) if fmt else str(value)


def with_gib(row: dict) -> dict:
  return {**row, **{f"{s}_peak_gib": row[f"{s}_peak_mb"] / 1024.0
                    for s in SIDES if row.get(f"{s}_peak_mb") is not None}}


def header(meta: dict) -> str:
  """The table's caption: device, versions, what was timed."""
  return (f"{meta.get('device', 'unknown device')}, {meta.get('date', '')}: "
          f"{meta['image_size']}x{meta['image_size']}, batch {meta['batch']}, full_ft, "
          f"median of {meta['steps']} steps after {meta['warmup']} warm-up; "
          f"jax {meta.get('jax', '?')}, torch {meta.get('torch', '?')} "
          f"(channels_last, cudnn.benchmark on a GPU; bfloat16 = autocast), "
          f"ftlab bfloat16 = config.model.dtype; float32 precision: torch cudnn.allow_tf32 "
          f"{meta.get('torch_cudnn_allow_tf32', '?')}, jax default_matmul_precision "
          f"{meta.get('jax_default_matmul_precision', '?')}; peak = the allocator's peak per "
          f"process.")


def markdown(meta: dict, rows: List[dict]) -> str:
  """The README table: a caption, one line per row, then every skip or error as a note."""
  lines = [header(meta), "",
           "| " + " | ".join(h for _, h, _ in COLUMNS) + " |",
           "|" + "|".join("---" for _ in COLUMNS) + "|"]
  for row in map(with_gib, rows):
    lines.append("| " + " | ".join(cell(row.get(k), f) for k, _, f in COLUMNS) + " |")
  notes = [f"- {r['model']} {r['dtype']} {n}" for r in rows for n in r["notes"]]
  if notes:
    lines += ["", "Not measured or failed:"] + notes
  return "\n".join(lines) + "\n"


def write_outputs(json_path: str, markdown_path: str, meta: dict, results: Dict) -> str:
  """Writes the JSON (meta, rows, every result) and the markdown ('' = none); returns the latter."""
  rows = summarize(results)
  text = markdown(meta, rows)
  if json_path:
    with open(json_path, "w", encoding="utf-8") as f:
      json.dump({"meta": meta, "rows": rows,
                 "results": [{**dataclasses.asdict(j), **r} for j, r in results.items()]},
                f, indent=1)
  if markdown_path:
    with open(markdown_path, "w", encoding="utf-8") as f:
      f.write(text)
  return text
