"""A real single-node SLURM on localhost for tests: munged, slurmctld and slurmd in a temp dir.

Needs root and Debian's `slurmctld`, `slurmd`, `slurm-client` and `munge`
packages (`.ci/run` installs them). Everything lives under the given dir
(config, state, spool, the munge socket, logs); the daemons are this
process's children, stopped by pid.
"""
import os
import pathlib
import shutil
import socket
import subprocess
import time

BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "sinfo")


def unavailable() -> str:
  """Why a cluster cannot start here ('' if it can)."""
  missing = [b for b in BINARIES if shutil.which(b) is None]
  if missing:
    return (f"SLURM is not installed ({', '.join(missing)} missing): apt-get install slurmctld "
            "slurmd slurm-client munge (.ci/run does)")
  if os.geteuid() != 0:
    return "starting slurmctld/slurmd/munged needs root"
  if not os.path.exists("/etc/munge/munge.key"):
    return "/etc/munge/munge.key is missing (the munge package creates it)"
  return ""


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _conf(root: pathlib.Path, host: str) -> str:
  return "\n".join([
      "ClusterName=ftlabtest", f"SlurmctldHost={host}", "SlurmUser=root", "SlurmdUser=root",
      "AuthType=auth/munge", "CredType=cred/munge",
      f"AuthInfo=socket={root}/munge/munge.socket.2",
      f"StateSaveLocation={root}/state", f"SlurmdSpoolDir={root}/spool",
      f"SlurmctldPidFile={root}/slurmctld.pid", f"SlurmdPidFile={root}/slurmd.pid",
      f"SlurmctldPort={_free_port()}", f"SlurmdPort={_free_port()}",
      "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
      "SelectType=select/cons_tres", "SelectTypeParameters=CR_CPU", "ReturnToService=2",
      "SchedulerType=sched/builtin", "SchedulerParameters=sched_min_interval=0",
      "MpiDefault=none", "JobCompType=jobcomp/none",
      "AccountingStorageType=accounting_storage/none",
      f"SlurmctldLogFile={root}/slurmctld.log", f"SlurmdLogFile={root}/slurmd.log",
      f"NodeName={host} CPUs={os.cpu_count()} State=UNKNOWN",
      "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP", ""])


class Cluster:
  """Starts the daemons; `env` is what commands need (SLURM_CONF); `stop()` ends them."""

  def __init__(self, root: pathlib.Path):
    self.root = root
    for d in ("state", "spool", "munge"):
      (root / d).mkdir(parents=True, exist_ok=True)
    (root / "slurm.conf").write_text(_conf(root, socket.gethostname()))
    self.env = {**os.environ, "SLURM_CONF": str(root / "slurm.conf")}
    self.procs = []

  def _start(self, *cmd: str) -> None:
    log = open(self.root / f"{os.path.basename(cmd[0])}.out", "wb")
    self.procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env))

  def start(self, timeout_s: float = 30.0) -> None:
    m = self.root / "munge"
    self._start("munged", "-F", "-f", f"--socket={m}/munge.socket.2", f"--pid-file={m}/pid",
                f"--log-file={m}/munged.log", f"--seed-file={m}/seed")
    deadline = time.monotonic() + timeout_s
    while not (m / "munge.socket.2").exists():
      if time.monotonic() > deadline:
        raise RuntimeError(f"munged did not start: {(self.root / 'munged.out').read_text()}")
      time.sleep(0.1)
    conf = str(self.root / "slurm.conf")
    self._start("slurmctld", "-D", "-f", conf)
    self._start("slurmd", "-D", "-f", conf)
    while True:
      out = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True,
                           env=self.env)
      if out.returncode == 0 and out.stdout.strip() == "idle":
        return
      if time.monotonic() > deadline:
        raise RuntimeError(f"SLURM did not come up: {out.stdout}{out.stderr}")
      time.sleep(0.3)

  def stop(self) -> None:
    for p in reversed(self.procs):
      p.terminate()
    for p in reversed(self.procs):
      try:
        p.wait(timeout=15)
      except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
