"""ftlab's jitted train step against an idiomatic PyTorch loop, on the same CPU and threads.

  python experiments/bench_step.py [--quick] [--json=FILE]
      [--models=resnet18,efficientnet_lite0] [--sizes=224,96]
      [--strategies=full_ft,linear_probe] [--torch_variants=...] [--dtype=float32]
      [--repeats=1] [--modern_models=convnext_tiny,vit_s_16]

For ResNet-18 and EfficientNet-Lite0 at batch 32 (224x224 and 96x96;
`--quick`: 96x96 only) and the strategies full_ft and linear_probe, both
frameworks train the same architecture from the same weights (ResNet-18:
torchvision's random init; Lite0: the packaged ImageNet weights with a new
100-class head), each in its own subprocess (so peak RSS is its own).
ConvNeXt-tiny and ViT-S/16 (`--modern_models`; '' = none) add rows at 96x96
for full_ft, linear_probe and lora, against torchvision's ConvNeXt-tiny and
its VisionTransformer class with ViT-S/16 widths built for 96 px (random
init); PyTorch's lora is the same adapters (`ftlab.training.lora.resolve`'s
targets, rank and alpha) as `torch.nn.utils.parametrize` parametrizations
W + (alpha / r) * B @ A of the frozen weights, PEFT's layout and init:

* ftlab: the train step of `ftlab.training.steps` (uint8 NHWC in, normalised inside),
  jitted with `donate_argnums=(0,)`; compile time and the step's FLOPs (XLA
  cost analysis of the compiled program) are reported.
* PyTorch (`torch.set_num_threads` = cores): SGD momentum 0.9 (weight decay
  1e-4, as ftlab's default), CrossEntropyLoss, `model.train()`; linear_probe
  sets `requires_grad=False` on all but the head and puts the trunk in eval
  mode. The uint8 batch is normalised inside the timed step too. Variants:
  eager NCHW, eager channels_last, and `torch.compile` of the model in both
  layouts (skipped with a note when compiling fails or times out). The best
  variant is `torch_images_per_s`; all are printed, with the first step's
  seconds (for torch.compile: compilation, shorter when Inductor's on-disk
  cache in /tmp is warm).

Both report the median step time after warm-up. The machine's peak FLOP/s is
measured in the same run with a 4096x4096 float32 matmul (the best of JAX and
PyTorch); `peak_flops_share` = ftlab's step FLOPs x steps/s / peak.

The input pipeline (`ftlab.data.pipeline.Loader`, train transforms: decode +
random-resized-crop + flip + batch) is timed on 500 JPEGs of 500x375 written
by the script, with the config's default decode threads and with one per
core, and compared with the images/s the ftlab train step consumes
(target: pipeline >= 2x the step's rate). One more row per size adds
`--pipeline_auto_augment` (default rand-m7-mstd0.5, RandAugment as the
Aircraft recipe; '' = none) on one thread per core;
`experiments/bench_pipeline.py` times just these pipeline rows.

The speed of a shared 2-core VM drifts by tens of percent between minutes.
`--repeats=N` adds N-1 rounds in which ftlab and each row's best PyTorch
variant (chosen in the first round) are re-measured back to back; a row then
reports the median images/s of each side and the median of the per-round
ratios (`ratio_min`/`ratio_max` give their range, `rounds` their count). Peak
RSS stays the first round's (ftlab's cold compile).

`--json=FILE` writes one row per (model, image_size, strategy) with the keys
model, image_size, strategy, ftlab_images_per_s, torch_images_per_s, ratio
(ftlab / torch), ftlab_peak_rss_mb, torch_peak_rss_mb, peak_flops_share,
ratio_min, ratio_max, rounds.
The ftlab workers apply `ftlab.training.runtime.configure_xla()` as ftlab's entry
points do (`--xla_defaults`: XLA's own defaults instead); XLA_FLAGS set in
the environment take precedence over it. The
`*_cpu` / `own_cores` columns give the CPU cores a worker kept busy while
timed (PyTorch's OpenMP threads spin, so theirs read ~2.0), `others_cores`
those taken by other processes (a contended worker is re-run, see
`benchlib`).
"""
import argparse
import functools
import os
import shutil
import statistics
import tempfile

import benchlib
from shared_weights import load_into_torch, load_torch_weights, torch_model, weights_key
import torch_lora


MODELS = ("resnet18", "efficientnet_lite0")
STRATEGIES = ("full_ft", "linear_probe")
MODERN_MODELS = ("convnext_tiny", "vit_s_16")
MODERN_STRATEGIES = ("full_ft", "linear_probe", "lora")
MODERN_SIZE = 96
TORCH_VARIANTS = ("eager_nchw", "eager_channels_last", "compile_nchw", "compile_channels_last")
ROW_KEYS = ("model", "image_size", "strategy", "ftlab_images_per_s", "torch_images_per_s",
            "ratio", "ftlab_peak_rss_mb", "torch_peak_rss_mb", "peak_flops_share",
            "ratio_min", "ratio_max", "rounds", "xla_images_per_s", "xla_ratio",
            "onednn_images_per_s", "onednn_ratio", "onednn_ratio_min", "onednn_ratio_max")
TORCH_HEADS = {"resnet18": "fc", "efficientnet_lite0": "_fc", "convnext_tiny": "classifier",
               "vit_s_16": "heads"}
PIPELINE_IMAGES = 500
PIPELINE_WH = (500, 375)
MATMUL_N = 4096
TARGET_PIPELINE_RATIO = 2.0


# --- workers (each in its own process) ---------------------------------------


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


# --- parent ------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="96x96 rows only")
  parser.add_argument("--json", default="", help="also write the rows to this JSON file")
  parser.add_argument("--models", default=",".join(MODELS))
  parser.add_argument("--sizes", default="", help="comma-separated; default 224,96 (quick: 96)")
  parser.add_argument("--strategies", default=",".join(STRATEGIES))
  parser.add_argument("--modern_models", default=",".join(MODERN_MODELS),
                      help=f"models compared at {MODERN_SIZE}px for {','.join(MODERN_STRATEGIES)}")
  parser.add_argument("--torch_variants", default=",".join(TORCH_VARIANTS),
                      help="subset of " + ",".join(TORCH_VARIANTS) + "; empty: ftlab only")
  parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"),
                      help="ftlab compute dtype")
  parser.add_argument("--xla_defaults", action="store_true",
                      help="time ftlab with XLA's default CPU flags instead of ftlab.training.runtime's")
  parser.add_argument("--compilation_cache", default="",
                      help="JAX compilation cache dir for the ftlab workers (default off: every "
                      "row compiles cold; a second run with the same dir measures warm runs)")
  parser.add_argument("--steps", type=int, default=0, help="timed steps (default 10, quick 6)")
  parser.add_argument("--warmup", type=int, default=2)
  parser.add_argument("--repeats", type=int, default=1,
                      help="rounds per row: after the first, ftlab and the row's best PyTorch "
                      "variant are re-measured back to back; medians and the median paired "
                      "ratio are reported (the machine's speed drifts between minutes)")
  parser.add_argument("--conv_impls", default="onednn,xla",
                      help="config.model.conv_impl values timed per row (auto | xla | onednn); "
                      "the first is the headline ftlab column, each gets <impl>_img/s and ratio")
  parser.add_argument("--compile_timeout", type=float, default=900.0,
                      help="seconds before a torch.compile variant is given up")
  parser.add_argument("--no_pipeline", action="store_true")
  parser.add_argument("--pipeline_auto_augment", default="rand-m7-mstd0.5",
                      help="config.data.auto_augment of an extra pipeline row per size (one "
                      "decode thread per core); '' = no such row")
  parser.add_argument("--no_peak", action="store_true")
  benchlib.add_worker_flags(parser)
  args = parser.parse_args(argv)
  if args.repeats < 1:
    parser.error(f"--repeats={args.repeats}: needs at least 1 round")
  return args



def measure(spec: dict, label: str, args: argparse.Namespace, timeout_s: float = 1800.0) -> dict:
  """Runs one worker on a quiet machine if possible; logs the outcome."""
  return benchlib.measure_logged(__file__, spec, label, args, timeout_s)


def best_torch(variants: dict) -> tuple:
  ok = {k: v for k, v in variants.items() if "images_per_s" in v}
  if not ok:
    return None, {}
  name = max(ok, key=lambda k: ok[k]["images_per_s"])
  return name, ok[name]


def share(flops: float, images_per_s: float, peak_gflops: float):
  if not flops or not images_per_s or not peak_gflops:
    return None
  return flops * images_per_s / benchlib.BATCH / (peak_gflops * 1e9)


def paired(rounds: list) -> dict:
  """Medians of (ftlab, torch) images/s pairs measured back to back, and of their ratios."""
  ok = [(a, b) for a, b in rounds if a and b]
  if not ok:
    return {}
  ratios = [a / b for a, b in ok]
  return {"ftlab": statistics.median(a for a, _ in ok), "torch": statistics.median(b for _, b in ok),
          "ratio": statistics.median(ratios), "ratio_min": min(ratios),
          "ratio_max": max(ratios), "rounds": len(ok)}


def impl_columns(impl: str, fl: dict, tips, key_rounds: list) -> dict:
  """`<impl>_images_per_s` and its paired ratio to PyTorch (`<impl>_ratio[_min|_max]`)."""
  pair = paired([(fl.get("images_per_s"), tips)] + [(r.get(impl), r.get("torch"))
                                                     for r in key_rounds])
  return {f"{impl}_images_per_s": pair.get("ftlab", fl.get("images_per_s")),
          f"{impl}_ratio": pair.get("ratio"), f"{impl}_ratio_min": pair.get("ratio_min"),
          f"{impl}_ratio_max": pair.get("ratio_max")}


def compare_rows(grid, ftlab_results, torch_results, peak_gflops, rounds=None) -> list:
  """One row per grid point, the JSON keys plus display extras.

  `ftlab_results[point]` maps each conv_impl to its result, the first one
  being the headline `ftlab_*` columns. `rounds` ({point: [{impl: img/s,
  'torch': img/s}, ...]}) holds the repeated back-to-back measurements;
  without it a row is its single first round.
  """
  rows = []
  for key in grid:
    (headline, fl), (variant, tb) = next(iter(ftlab_results[key].items())), \
        best_torch(torch_results.get(key, {}))
    row = dict(zip(("model", "image_size", "strategy"), key))
    ips, tips = fl.get("images_per_s"), tb.get("images_per_s")
    key_rounds = (rounds or {}).get(key, [])
    for impl, result in ftlab_results[key].items():
      row.update(impl_columns(impl, result, tips, key_rounds))
    pair = paired([(ips, tips)] + [(r.get(headline), r.get("torch")) for r in key_rounds])
    # XLA's cost analysis does not see inside custom calls: the step's FLOPs come from the
    # implementation that counts the most (the XLA one when it was timed).
    flops = max((r.get("flops") or 0.0) for r in ftlab_results[key].values())
    if pair:
      ips, tips = pair["ftlab"], pair["torch"]
    row.update(ftlab_images_per_s=ips, torch_images_per_s=tips,
               ratio=pair.get("ratio"), ratio_min=pair.get("ratio_min"),
               ratio_max=pair.get("ratio_max"), rounds=pair.get("rounds"),
               ftlab_peak_rss_mb=fl.get("peak_rss_mb"), torch_peak_rss_mb=tb.get("peak_rss_mb"),
               peak_flops_share=share(flops, ips, peak_gflops),
               torch_flops_share=share(flops, tips, peak_gflops),
               torch_variant=variant, compile_s=fl.get("compile_s"),
               ftlab_cores=fl.get("own_cores"), torch_cores=tb.get("own_cores"),
               gflop_per_step=flops / 1e9 or None, error=fl.get("error"))
    rows.append(row)
  return rows


MAIN_COLUMNS = (
    ("model", "model", ""), ("image_size", "size", "d"), ("strategy", "strategy", ""),
    ("ftlab_images_per_s", "ftlab_img/s", ".1f"), ("torch_images_per_s", "torch_img/s", ".1f"),
    ("torch_variant", "torch_best", ""), ("ratio", "ratio", ".2f"),
    ("xla_images_per_s", "xla_img/s", ".1f"), ("xla_ratio", "xla_ratio", ".2f"),
    ("onednn_images_per_s", "onednn_img/s", ".1f"), ("onednn_ratio", "onednn_ratio", ".2f"),
    ("onednn_ratio_min", "onednn_min", ".2f"), ("onednn_ratio_max", "onednn_max", ".2f"),
    ("ratio_min", "ratio_min", ".2f"), ("ratio_max", "ratio_max", ".2f"), ("rounds", "rounds", "d"),
    ("ftlab_peak_rss_mb", "ftlab_rss_mb", ".0f"), ("torch_peak_rss_mb", "torch_rss_mb", ".0f"),
    ("peak_flops_share", "ftlab_peak_share", ".3f"), ("torch_flops_share", "torch_peak_share", ".3f"),
    ("gflop_per_step", "gflop/step", ".1f"), ("compile_s", "ftlab_compile_s", ".1f"),
    ("ftlab_cores", "ftlab_cpu", ".2f"), ("torch_cores", "torch_cpu", ".2f"),
    ("error", "error", ""))
TORCH_COLUMNS = (
    ("model", "model", ""), ("image_size", "size", "d"), ("strategy", "strategy", ""),
    ("variant", "variant", ""), ("images_per_s", "img/s", ".1f"), ("step_ms", "step_ms", ".0f"),
    ("first_step_s", "first_step_s", ".1f"), ("peak_rss_mb", "rss_mb", ".0f"),
    ("own_cores", "own_cores", ".2f"), ("foreign_cores", "others_cores", ".2f"),
    ("error", "note", ""))
PIPE_COLUMNS = (
    ("image_size", "size", "d"), ("threads", "decode_threads", "d"),
    ("auto_augment", "auto_augment", ""),
    ("images_per_s", "pipeline_img/s", ".1f"), ("model", "model", ""), ("strategy", "strategy", ""),
    ("step_images_per_s", "step_img/s", ".1f"), ("ratio", "pipeline/step", ".2f"),
    ("target", "target>=2x", ""))


def pipeline_rows(pipes: dict, ftlab_results: dict) -> list:
  rows = []
  for (size, threads, policy), p in pipes.items():
    for (model, s, strategy), by_impl in ftlab_results.items():
      fl = next(iter(by_impl.values()))
      if s != size:
        continue
      step_ips, ips = fl.get("images_per_s"), p.get("images_per_s")
      ratio = ips / step_ips if ips and step_ips else None
      rows.append({"image_size": size, "threads": threads, "auto_augment": policy or "-",
                   "images_per_s": ips, "model": model,
                   "strategy": strategy, "step_images_per_s": step_ips, "ratio": ratio,
                   "target": None if ratio is None else
                   ("met" if ratio >= TARGET_PIPELINE_RATIO else "MISSED")})
  return rows


def timed_steps(args) -> int:
  return args.steps or (6 if args.quick else 10)


def conv_impls(args) -> list:
  return [impl for impl in args.conv_impls.split(",") if impl]


def run_ftlab(args, prep, run, key, conv_impl: str, label: str) -> dict:
  """One ftlab worker for grid point `key` = (model, image_size, strategy)."""
  model, size, strategy = key
  return run({"kind": "ftlab", "dtype": args.dtype, "xla_defaults": args.xla_defaults,
              "conv_impl": conv_impl,
              "compilation_cache": args.compilation_cache, "model": model, "image_size": size,
              "strategy": strategy, "weights": prep["weights"][weights_key(model, size)],
              "steps": timed_steps(args), "warmup": args.warmup}, label)


def run_torch(args, prep, run, key, variant: str, label: str) -> dict:
  """One PyTorch worker (`variant`) for grid point `key`."""
  from ftlab.models import get_spec  # pylint: disable=import-outside-toplevel
  model, size, strategy = key
  spec = get_spec(model)
  return run({"kind": "torch", "variant": variant, "mean": spec.mean, "std": spec.std,
              "model": model, "image_size": size, "strategy": strategy,
              "weights": prep["weights"][weights_key(model, size)], "steps": timed_steps(args),
              "warmup": args.warmup}, label,
             timeout_s=args.compile_timeout if variant.startswith("compile") else 1800.0)


def run_grid(args, grid, prep, run) -> tuple:
  """({point: ftlab result}, {point: {variant: torch result}}) over the grid."""
  variants = [v for v in args.torch_variants.split(",") if v]
  ftlab_results, torch_results = {}, {}
  for key in grid:
    name = " ".join(map(str, key))
    ftlab_results[key] = {impl: run_ftlab(args, prep, run, key, impl, f"ftlab {impl} {name}")
                          for impl in conv_impls(args)}
    for variant in variants:
      torch_results.setdefault(key, {})[variant] = run_torch(
          args, prep, run, key, variant, f"torch {variant} {name}")
  return ftlab_results, torch_results


def run_repeats(args, grid, prep, run, ftlab_results, torch_results) -> dict:
  """{point: [{impl: img/s, 'torch': img/s}]}: rounds 2..repeats, each back to back."""
  rounds = {}
  for r in range(2, args.repeats + 1):
    for key in grid:
      variant, _ = best_torch(torch_results.get(key, {}))
      impls = [i for i, fl in ftlab_results[key].items() if "error" not in fl]
      if variant is None or not impls:
        continue
      label = f"round {r}: {' '.join(map(str, key))}"
      measured = {impl: run_ftlab(args, prep, run, key, impl, f"{label} ftlab {impl}")
                  .get("images_per_s") for impl in impls}
      tb = run_torch(args, prep, run, key, variant, f"{label} torch {variant}")
      rounds.setdefault(key, []).append({**measured, "torch": tb.get("images_per_s")})
  return rounds


def run_pipelines(sizes, prep, run, auto_augment: str = "") -> dict:
  """{(size, decode threads, auto_augment): result}.

  Plain train transforms with the config's default threads and one per core;
  with `auto_augment`, also that policy on one thread per core.
  """
  from configs.default import get_config  # pylint: disable=import-outside-toplevel
  data = get_config().data
  points = [(size, threads, "") for size in sizes
            for threads in sorted({data.num_workers, benchlib.num_cores()})]
  if auto_augment:
    points += [(size, benchlib.num_cores(), auto_augment) for size in sizes]
  pipes = {}
  for size, threads, policy in points:
    pipes[(size, threads, policy)] = run(
        {"kind": "pipeline", "image_size": size, "threads": threads, "auto_augment": policy,
         "prefetch": data.prefetch, "image_dir": prep["image_dir"]},
        f"pipeline {size}px {threads} threads {policy}".rstrip())
  return pipes


def ftlab_flags(ftlab_results: dict) -> str:
  flags = {r.get("xla_flags", "") for by_impl in ftlab_results.values()
           for r in by_impl.values() if "xla_flags" in r}
  return " | ".join(sorted(flags)) if flags else "(no ftlab rows)"


def report(args, prep, peak, rows, torch_results, pipes, ftlab_results) -> None:
  """Prints the comparison, every torch variant and the pipeline table."""
  from configs.default import get_config  # pylint: disable=import-outside-toplevel
  data = get_config().data
  print(f"ftlab ({args.dtype}) vs PyTorch (best of {args.torch_variants or 'none'}) on "
        f"{benchlib.cpu_description()}: batch {benchlib.BATCH}, {benchlib.num_cores()} "
        f"cores/threads, median of {timed_steps(args)} steps; ratio = ftlab/torch "
        f"(median over {args.repeats} back-to-back round(s)); "
        f"ftlab's XLA_FLAGS={ftlab_flags(ftlab_results)!r}. Weights: "
        + "; ".join(f"{m}: {n}" for m, n in prep["notes"].items()))
  if peak.get("error"):
    print(f"Peak matmul failed: {peak['error']}")
  elif peak:
    print("Peak matmul {0}x{0}: JAX f32 {1:.1f} GFLOP/s, JAX bf16 {2:.1f} GFLOP/s, torch f32 "
          "{3:.1f} GFLOP/s -> peak {4:.1f} GFLOP/s".format(
              MATMUL_N, peak.get("jax_float32_gflops", 0), peak.get("jax_bfloat16_gflops", 0),
              peak.get("torch_float32_gflops", 0), peak.get("peak_gflops", 0)))
  print(benchlib.format_table(rows, MAIN_COLUMNS))
  if torch_results:
    print("\nEvery PyTorch variant:")
    flat = [{"model": k[0], "image_size": k[1], "strategy": k[2], "variant": v, **r}
            for k, vs in torch_results.items() for v, r in vs.items()]
    print(benchlib.format_table(flat, TORCH_COLUMNS))
  if pipes:
    print(f"\nInput pipeline (Loader, train transforms, {PIPELINE_IMAGES} JPEGs of "
          f"{PIPELINE_WH[0]}x{PIPELINE_WH[1]}, prefetch {data.prefetch}; config default "
          f"{data.num_workers} decode threads) vs the images/s the ftlab step consumes:")
    print(benchlib.format_table(pipeline_rows(pipes, ftlab_results), PIPE_COLUMNS))


def main(argv=None) -> None:
  args = parse_args(argv)
  if args.worker:
    benchlib.serve_worker(WORKERS, args.worker)
    return
  sizes = [int(s) for s in (args.sizes or ("96" if args.quick else "224,96")).split(",")]
  models = [m for m in args.models.split(",") if m]  # '' = only the --modern_models rows
  grid = [(m, s, st) for m in models for s in sizes for st in args.strategies.split(",")]
  grid += [(m, MODERN_SIZE, st) for m in args.modern_models.split(",") if m
           for st in MODERN_STRATEGIES]
  benchlib.log(f"{benchlib.cpu_description()}, {benchlib.num_cores()} cores, "
               f"batch {benchlib.BATCH}; "
               f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
  run = functools.partial(measure, args=args)
  workdir = tempfile.mkdtemp(prefix="bench_step_")
  try:
    points = sorted({(m, s) for m, s, _ in grid})
    prep = run({"kind": "prepare", "points": points, "dir": workdir}, "prepare weights + JPEGs")
    if "error" in prep:
      raise SystemExit(f"prepare failed: {prep['error']}")
    peak = {} if args.no_peak else run({"kind": "peak", "n": MATMUL_N}, "peak matmul")
    ftlab_results, torch_results = run_grid(args, grid, prep, run)
    rounds = run_repeats(args, grid, prep, run, ftlab_results, torch_results)
    pipes = ({} if args.no_pipeline else
             run_pipelines(sizes, prep, run, args.pipeline_auto_augment))
  finally:
    shutil.rmtree(workdir, ignore_errors=True)
  rows = compare_rows(grid, ftlab_results, torch_results, peak.get("peak_gflops"), rounds)
  report(args, prep, peak, rows, torch_results, pipes, ftlab_results)
  if args.json:
    benchlib.write_json(args.json, [{k: r.get(k) for k in ROW_KEYS} for r in rows])
    print(f"\nwrote {len(rows)} rows to {args.json}")


if __name__ == "__main__":
  main()
