"""bench_gpu.py's workers, each run in its own process (`subprocs.run_worker`): the probe and
shared weights, ftlab's train step, PyTorch's (eager or torch.compile, AMP bf16)."""
import os
import sys
import time
from typing import Callable, Optional, Tuple

import benchlib
from shared_weights import load_into_torch, load_torch_weights, save_state_dict, torch_model


MIB = 2.0 ** 20


def check_device(framework: str, found: str, device_check: str) -> None:
  if device_check == "gpu" and found != "gpu":
    raise RuntimeError(f"--device_check=gpu: {framework} runs on {found!r}, not a GPU")


def attempt(fn: Callable[[], object]) -> Tuple[object, str]:
  """(fn(), '') or (None, 'ErrorType: message'): a probe's reading that may fail."""
  try:
    return fn(), ""
  except Exception as e:  # pylint: disable=broad-except
    return None, f"{type(e).__name__}: {e}"


def norm_of(model: str) -> dict:
  """The mean and std of `model`'s ftlab spec (what ftlab's step normalises with)."""
  from ftlab.models import get_spec  # pylint: disable=import-outside-toplevel
  spec = get_spec(model)
  return {"mean": tuple(spec.mean), "std": tuple(spec.std)}


def import_ftlab_step() -> str:
  """What the ftlab worker imports; returns flax's version."""
  import flax  # pylint: disable=import-outside-toplevel
  from configs import default  # noqa: F401  # pylint: disable=import-outside-toplevel
  from ftlab.training import steps  # noqa: F401  # pylint: disable=import-outside-toplevel
  return flax.__version__


PRECISION = {  # the settings that decide float32 convolution/matmul precision on each side
    "torch_cudnn_allow_tf32": lambda torch, jax: torch.backends.cudnn.allow_tf32,
    "torch_matmul_allow_tf32": lambda torch, jax: torch.backends.cuda.matmul.allow_tf32,
    "jax_default_matmul_precision": lambda torch, jax: jax.config.jax_default_matmul_precision}


def prepare_worker(spec: dict) -> dict:
  """Devices and versions of both frameworks, ftlab's step import, the shared weights.

  A failed import of ftlab's step or a model's PyTorch original is recorded
  (its jobs are then skipped), not raised: the other jobs still run.
  """
  os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # this probe only
  import jax  # pylint: disable=import-outside-toplevel
  import torch  # pylint: disable=import-outside-toplevel
  cuda = torch.cuda.is_available()
  out = {"torch": torch.__version__, "torch_backend": "gpu" if cuda else "cpu",
         "torch_device": torch.cuda.get_device_name(0) if cuda else "cpu",
         "jax": jax.__version__, "jax_backend": jax.default_backend(),
         "jax_device": jax.devices()[0].device_kind, "python": sys.version.split()[0]}
  for name, read in PRECISION.items():
    value, error = attempt(lambda read=read: read(torch, jax))
    out[name] = error or str(value)
  out["flax"], out["ftlab_import_error"] = attempt(import_ftlab_step)
  out["weights"], out["weight_errors"], out["norms"] = {}, {}, {}
  for m in spec["models"]:
    out["norms"][m], _ = attempt(lambda m=m: norm_of(m))
    path, error = attempt(lambda m=m: save_state_dict(
        torch_model(m, spec["image_size"]), os.path.join(spec["dir"], f"{m}.npz")))
    if error:
      out["weight_errors"][m] = error
    else:
      out["weights"][m] = path
  return out


def jax_peak_mb(device) -> Optional[float]:
  stats = device.memory_stats()  # None on the CPU backend
  return stats["peak_bytes_in_use"] / MIB if stats else None


def ftlab_worker(spec: dict) -> dict:
  """Compiles and times ftlab's full_ft train step at the spec's dtype."""
  import jax  # pylint: disable=import-outside-toplevel

  from ftlab.models import conv as conv_lib  # pylint: disable=import-outside-toplevel
  from ftlab.training.steps import make_train_step  # pylint: disable=import-outside-toplevel
  check_device("jax", jax.default_backend(), spec["device_check"])
  config = benchlib.ftlab_config(spec["model"], spec["image_size"], "full_ft", spec["dtype"])
  config.train.batch_size = spec["batch"]
  setup, state = benchlib.build_state(config)
  state = load_torch_weights(setup, state, spec["weights"])
  batch = jax.device_put(benchlib.random_batch(spec["image_size"], batch=spec["batch"]))
  rng = jax.random.key(1)
  compiled, compile_s = benchlib.compile_step(make_train_step(setup, 0), state, batch, rng)
  timing = benchlib.time_steps(benchlib.Stepper(compiled, state, batch, rng),
                               spec["steps"], spec["warmup"], rounds=1)
  memory, _ = attempt(compiled.memory_analysis)  # an extra: its failure loses no row
  return {"images_per_s": spec["batch"] / timing.median_s, "step_ms": timing.median_s * 1e3,
          "compile_s": compile_s, "peak_mb": jax_peak_mb(jax.devices()[0]),
          "temp_mb": memory.temp_size_in_bytes / MIB if memory else None,
          "device": jax.devices()[0].device_kind, "conv_impl": conv_lib.resolved(),
          "depthwise_impl": conv_lib.depthwise_resolved(), "peak_rss_mb": benchlib.peak_rss_mb()}


def torch_worker(spec: dict) -> dict:
  """Times an idiomatic PyTorch train step: channels_last, eager or torch.compile, AMP bf16."""
  import torch  # pylint: disable=import-outside-toplevel
  cuda = torch.cuda.is_available()
  check_device("torch", "gpu" if cuda else "cpu", spec["device_check"])
  device = torch.device("cuda" if cuda else "cpu")
  if cuda:
    torch.backends.cudnn.benchmark = True
  else:
    torch.set_num_threads(benchlib.num_cores())
  net = torch_model(spec["model"], spec["image_size"])
  load_into_torch(net, spec["weights"])
  net = net.to(device, memory_format=torch.channels_last).train()
  opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
  loss_fn = torch.nn.CrossEntropyLoss()
  forward = torch.compile(net) if spec["variant"] == "compile" else net
  batch = benchlib.random_batch(spec["image_size"], batch=spec["batch"])
  images = torch.from_numpy(batch["image"]).to(device)
  labels = torch.from_numpy(batch["label"]).long().to(device)
  mean = torch.tensor(spec["mean"], device=device).view(1, 3, 1, 1) * 255.0
  std = torch.tensor(spec["std"], device=device).view(1, 3, 1, 1) * 255.0
  amp = spec["dtype"] == "bfloat16"

  def step():
    x = ((images.permute(0, 3, 1, 2).float() - mean) / std).contiguous(
        memory_format=torch.channels_last)
    opt.zero_grad(set_to_none=True)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
      loss = loss_fn(forward(x), labels)
    loss.backward()
    opt.step()
    if cuda:
      torch.cuda.synchronize()

  start = time.perf_counter()
  step()  # torch.compile compiles here; cudnn.benchmark picks its algorithms
  first_s = time.perf_counter() - start
  timing = benchlib.time_steps(step, spec["steps"], spec["warmup"], rounds=1)
  return {"images_per_s": spec["batch"] / timing.median_s, "step_ms": timing.median_s * 1e3,
          "first_step_s": first_s,
          "peak_mb": torch.cuda.max_memory_allocated() / MIB if cuda else None,
          "device": torch.cuda.get_device_name(0) if cuda else "cpu",
          "peak_rss_mb": benchlib.peak_rss_mb()}


WORKERS = {"prepare": prepare_worker, "ftlab": ftlab_worker, "torch": torch_worker}
