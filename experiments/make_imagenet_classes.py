"""Regenerates ftlab/pretrained/imagenet_classes.txt from torchvision's metadata.

The 1000 ImageNet-1k class names in index order, one per line, as torchvision
ships them with its weights (`ResNet18_Weights.IMAGENET1K_V1.meta['categories']`).
Run: python experiments/make_imagenet_classes.py
"""
import pathlib

import torchvision

OUT = pathlib.Path(__file__).resolve().parents[1] / "ftlab" / "pretrained" / "imagenet_classes.txt"


def main():
  names = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"]
  assert len(names) == 1000 and all(name and "\n" not in name for name in names)
  OUT.write_text("".join(name + "\n" for name in names), encoding="utf-8")
  print(f"wrote {len(names)} class names to {OUT}")


if __name__ == "__main__":
  main()
