"""A real ftlab run against a plain PyTorch loop, one after the other, over rounds.

  python experiments/fashion_mnist_folder.py --out=data/fmnist --train_per_class=450
  python experiments/bench_vs_torch_loop.py --data=data/fmnist [--rounds=3] \
      [--strategies=full_ft,linear_probe] [--image_size=96] [--epochs=1]

What a user feels: `python -m ftlab.main` and `experiments/torch_reference.py`
(eager PyTorch, `efficientnet_lite_pytorch`'s EfficientNet-Lite0 built for the
image size, torchvision transforms, 2 threads) train the same config
(`configs/fashion_mnist.py` with `--image_size` and `--epochs`) on the same
folder. Each side reports its own train images/s (training steps only:
compilation, evaluation and re-estimation excluded). The sides alternate
within each round, each round waits for a quiet machine (other processes
under half a core), and the table gives every round's numbers and the
median ratio ftlab / PyTorch per strategy. Only EfficientNet-Lite0: the
PyTorch loop builds no other model.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

import benchlib
import fidelity


def one_run(side: str, strategy: str, args, workdir: str) -> float:
  """Train images/s of one run of `side`."""
  path = os.path.join(workdir, side, strategy)
  os.makedirs(path, exist_ok=True)
  overrides = [f"data.image_size={args.image_size}", f"train.num_epochs={args.epochs}"]
  cmd = fidelity.command(side, args.config, strategy, 0, args.data, overrides, path)
  with open(os.path.join(path, "log.txt"), "w", encoding="utf-8") as log:
    subprocess.run(cmd, cwd=fidelity.ROOT, stdout=log, stderr=subprocess.STDOUT, check=True)
  with open(fidelity.result_file(path, side), encoding="utf-8") as f:
    return float(json.load(f)["train_images_per_s"])


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data", required=True, help="an image folder with train/ and test/")
  parser.add_argument("--config", default="configs/fashion_mnist.py")
  parser.add_argument("--strategies", default="full_ft,linear_probe")
  parser.add_argument("--image_size", type=int, default=96)
  parser.add_argument("--epochs", type=float, default=1.0)
  parser.add_argument("--rounds", type=int, default=3)
  args = parser.parse_args(argv)
  args.data = os.path.abspath(args.data)
  strategies = args.strategies.split(",")
  print(f"CPU: {benchlib.cpu_description()}, {benchlib.num_cores()} cores", flush=True)
  rates = {(s, side): [] for s in strategies for side in fidelity.SIDES}
  with tempfile.TemporaryDirectory() as workdir:
    for r in range(args.rounds):
      for strategy in strategies:
        for side in fidelity.SIDES if r % 2 == 0 else fidelity.SIDES[::-1]:
          load = benchlib.wait_for_quiet()
          rate = one_run(side, strategy, args, workdir)
          rates[(strategy, side)].append(rate)
          print(f"round {r}  {strategy:<14} {side:<6} {rate:8.1f} images/s  "
                f"(other load {load:.2f} cores)", flush=True)
  print("\n| model | strategy | ftlab images/s | PyTorch images/s | ftlab / PyTorch (median) |")
  print("|---|---|---|---|---|")
  for strategy in strategies:
    ours, theirs = rates[(strategy, "ftlab")], rates[(strategy, "torch")]
    ratio = statistics.median(a / b for a, b in zip(ours, theirs))
    print(f"| efficientnet_lite0 {args.image_size} | {strategy} | "
          + " / ".join(f"{x:.1f}" for x in ours) + " | "
          + " / ".join(f"{x:.1f}" for x in theirs) + f" | {ratio:.2f} |")
  return 0


if __name__ == "__main__":
  sys.exit(main())
