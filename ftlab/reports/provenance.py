"""Where a report's numbers come from: the ftlab commit that wrote it."""
import pathlib
import subprocess

SOURCE = pathlib.Path(__file__).resolve().parents[2]


def commit() -> str:
  """`git describe --always --dirty` of ftlab's source tree ('unknown' outside a git checkout)."""
  try:
    out = subprocess.run(["git", "-C", str(SOURCE), "describe", "--always", "--dirty"],
                         capture_output=True, text=True, timeout=30, check=True)
  except (OSError, subprocess.SubprocessError):
    return "unknown"
  return out.stdout.strip() or "unknown"
