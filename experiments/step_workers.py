"""bench_step.py's workers, each run in its own process (`subprocs.run_worker`): the shared
weights and JPEGs, ftlab's train step, PyTorch's, the peak matmul, the input pipeline."""
import functools
import os

import benchlib
from shared_weights import load_into_torch, load_torch_weights, torch_model, weights_key
import torch_lora


TORCH_HEADS = {"resnet18": "fc", "efficientnet_lite0": "_fc", "convnext_tiny": "classifier",
               "vit_s_16": "heads"}
PIPELINE_IMAGES = 500
PIPELINE_WH = (500, 375)


def write_jpegs(image_dir: str) -> str:
  """PIPELINE_IMAGES smooth noisy JPEGs of PIPELINE_WH into `image_dir` (returned)."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(0)
  os.makedirs(image_dir, exist_ok=True)
  w, h = PIPELINE_WH
  for i in range(PIPELINE_IMAGES):
    coarse = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
    smooth = np.asarray(coarse.resize((w, h), Image.BICUBIC), np.float32)
    noisy = np.clip(smooth + rng.normal(0, 8, smooth.shape), 0, 255).astype(np.uint8)
    Image.fromarray(noisy).save(os.path.join(image_dir, f"{i:04d}.jpg"), quality=90)
  return image_dir


def prepare_worker(spec: dict) -> dict:
  """Writes each (model, size)'s shared weights (.npz of the torch state dict) and the JPEGs."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  import torch  # pylint: disable=import-outside-toplevel
  out = {"weights": {}, "notes": {}}
  for model, size in spec["points"]:
    net = torch_model(model, size)
    state = {k: v.numpy() for k, v in net.state_dict().items()}
    if model == "efficientnet_lite0":
      from ftlab.pretrained import pth, registry  # pylint: disable=import-outside-toplevel
      packaged = pth.load_state_dict(registry.resolve(model))
      state.update({k: np.asarray(v) for k, v in packaged.items() if not k.startswith("_fc.")})
      out["notes"][model] = "packaged ImageNet weights, new 100-class _fc (torch init)"
    else:
      out["notes"][model] = "torchvision random init (seed 0)"
    net.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()})
    path = os.path.join(spec["dir"], f"{weights_key(model, size)}.npz")
    np.savez(path, **state)
    out["weights"][weights_key(model, size)] = path
  out["image_dir"] = write_jpegs(os.path.join(spec["dir"], "jpeg"))
  return out


def ftlab_worker(spec: dict) -> dict:
  """Compiles and times ftlab's train step on the shared weights."""
  import jax  # pylint: disable=import-outside-toplevel

  from ftlab.models import conv as conv_lib  # pylint: disable=import-outside-toplevel
  from ftlab.training import runtime  # pylint: disable=import-outside-toplevel
  from ftlab.training.steps import make_train_step  # pylint: disable=import-outside-toplevel
  runtime.use_compilation_cache(spec.get("compilation_cache", ""))
  config = benchlib.ftlab_config(spec["model"], spec["image_size"], spec["strategy"], spec["dtype"])
  config.model.conv_impl = spec["conv_impl"]
  setup, state = benchlib.build_state(config)
  state = load_torch_weights(setup, state, spec["weights"])
  batch = jax.device_put(benchlib.random_batch(spec["image_size"]))
  rng = jax.random.key(1)
  compiled, compile_s = benchlib.compile_step(make_train_step(setup, 0), state, batch, rng)
  timing = benchlib.time_steps(benchlib.Stepper(compiled, state, batch, rng),
                               spec["steps"], spec["warmup"])
  return {"images_per_s": benchlib.BATCH / timing.median_s, "step_ms": timing.median_s * 1e3,
          "compile_s": compile_s, "flops": benchlib.flops_of(compiled),
          "peak_rss_mb": benchlib.peak_rss_mb(), "foreign_cores": timing.foreign_cores,
          "own_cores": timing.own_cores, "xla_flags": os.environ.get("XLA_FLAGS", ""),
          "conv_impl": conv_lib.resolved()}


def _torch_train_modes(net, model: str, strategy: str) -> None:
  """train() everywhere; linear_probe: trunk frozen and in eval mode, head (+dropout) training."""
  net.train()
  if strategy != "linear_probe":
    return
  head = getattr(net, TORCH_HEADS[model])
  for p in net.parameters():
    p.requires_grad_(False)
  for p in head.parameters():
    p.requires_grad_(True)
  net.eval()
  head.train()
  if hasattr(net, "_dropout"):
    net._dropout.train()  # pylint: disable=protected-access


def torch_worker(spec: dict) -> dict:
  """Times an idiomatic PyTorch training step (one layout / compile variant)."""
  import time  # pylint: disable=import-outside-toplevel

  import torch  # pylint: disable=import-outside-toplevel
  torch.set_num_threads(benchlib.num_cores())
  channels_last = spec["variant"].endswith("channels_last")
  layout = torch.channels_last if channels_last else torch.contiguous_format
  net = torch_model(spec["model"], spec["image_size"])
  load_into_torch(net, spec["weights"])
  if spec["strategy"] == "lora":
    torch_lora.add_lora(net, spec["model"], spec["image_size"], TORCH_HEADS[spec["model"]])
  net = net.to(memory_format=layout)
  _torch_train_modes(net, spec["model"], spec["strategy"])
  opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.01,
                        momentum=0.9, weight_decay=1e-4)
  loss_fn = torch.nn.CrossEntropyLoss()
  forward = torch.compile(net) if spec["variant"].startswith("compile") else net
  batch = benchlib.random_batch(spec["image_size"])
  images, labels = torch.from_numpy(batch["image"]), torch.from_numpy(batch["label"]).long()
  mean = torch.tensor(spec["mean"]).view(1, 3, 1, 1) * 255.0
  std = torch.tensor(spec["std"]).view(1, 3, 1, 1) * 255.0

  def step():
    x = ((images.permute(0, 3, 1, 2).float() - mean) / std).contiguous(memory_format=layout)
    opt.zero_grad(set_to_none=True)
    loss = loss_fn(forward(x), labels)
    loss.backward()
    opt.step()

  start = time.perf_counter()
  step()  # compiles for torch.compile variants
  first_s = time.perf_counter() - start
  timing = benchlib.time_steps(step, spec["steps"], spec["warmup"])
  return {"images_per_s": benchlib.BATCH / timing.median_s, "step_ms": timing.median_s * 1e3,
          "first_step_s": first_s, "peak_rss_mb": benchlib.peak_rss_mb(),
          "foreign_cores": timing.foreign_cores, "own_cores": timing.own_cores,
          "threads": torch.get_num_threads()}


def peak_worker(spec: dict) -> dict:
  """GFLOP/s of a large matmul in JAX (float32, bfloat16) and PyTorch (float32)."""
  import jax  # pylint: disable=import-outside-toplevel
  import torch  # pylint: disable=import-outside-toplevel
  torch.set_num_threads(benchlib.num_cores())
  n = spec["n"]
  flops = 2.0 * n ** 3
  matmul = jax.jit(lambda x, y: x @ y)
  calls = {}
  for dtype in ("float32", "bfloat16"):
    a = jax.random.normal(jax.random.key(0), (n, n), dtype)
    calls[f"jax_{dtype}"] = functools.partial(lambda x: matmul(x, x).block_until_ready(), a)
  t = torch.randn(n, n)
  calls["torch_float32"] = lambda: torch.mm(t, t)
  out, foreign = {}, 0.0
  for name, call in calls.items():
    timing = benchlib.time_steps(call, steps=5, warmup=1)
    out[f"{name}_gflops"] = flops / timing.median_s / 1e9
    foreign = max(foreign, timing.foreign_cores)
  out["peak_gflops"] = max(out["jax_float32_gflops"], out["torch_float32_gflops"])
  out["foreign_cores"] = foreign
  return out


def pipeline_worker(spec: dict) -> dict:
  """Images/s of the train input pipeline (decode + augment + batch) over the JPEGs."""
  import numpy as np  # pylint: disable=import-outside-toplevel

  from ftlab.data.pipeline import Augment, Loader  # pylint: disable=import-outside-toplevel
  from ftlab.data.sources import Split  # pylint: disable=import-outside-toplevel
  paths = sorted(os.path.join(spec["image_dir"], f) for f in os.listdir(spec["image_dir"]))
  split = Split(paths, np.zeros(len(paths), np.int32))
  augment = Augment(spec["image_size"], train=True, auto_augment=spec.get("auto_augment", ""))
  loader = Loader(split, benchlib.BATCH, augment, train=True,
                  seed=0, num_workers=spec["threads"], prefetch=spec["prefetch"])
  epochs = iter(range(10**6))
  run = lambda: sum(len(b["label"]) for b in loader.epoch(next(epochs)))  # pylint: disable=unnecessary-lambda-assignment
  images = run()
  timing = benchlib.time_steps(run, steps=3, warmup=0)
  return {"images_per_s": images / timing.median_s, "foreign_cores": timing.foreign_cores,
          "peak_rss_mb": benchlib.peak_rss_mb()}


WORKERS = {"prepare": prepare_worker, "ftlab": ftlab_worker, "torch": torch_worker,
           "peak": peak_worker, "pipeline": pipeline_worker}
