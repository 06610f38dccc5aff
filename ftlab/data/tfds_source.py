"""TFDS datasets by name, read through TFDS's random-access data source (array_record).

`config.data.kind = "tfds"`: `config.data.name` is a TFDS catalog name
(`oxford_flowers102`, `oxford_iiit_pet`, `food101`, `stanford_dogs`,
`cars196`, ... also `name/config:version`), `config.data.data_dir` the TFDS
data directory ('' = TFDS's default, ~/tensorflow_datasets), and the split
keys hold TFDS split strings (`train[:90%]`, `validation`, `test`).

Each split becomes a `sources.Split` whose "paths" are `TfdsImage`s: an index
into `builder.as_data_source(split)` (ArrayRecord, random access), read
when the pipeline decodes that image. The images stay encoded
(`SkipDecoding`) and go through the same PIL decoding and augmentation as
image folders, so a batch is still a pure function of (seed, epoch, index).
Labels are read once, at load, in one pass over each split. Class names
come from the label feature (`ClassLabel.names`).

A dataset not prepared under `data_dir` is an error naming the command that
prepares it, unless `config.data.download=True`, which runs the builder's
own `download_and_prepare` (in array_record format).
"""
import dataclasses
import logging
from typing import Any, Sequence

import numpy as np

from ftlab.data.sources import DataError, Source, Split

FILE_FORMAT = "array_record"
LABEL_READ_CHUNK = 1024  # records deserialised per call while reading a split's labels


@dataclasses.dataclass(frozen=True)
class TfdsImage:
  """One image of a TFDS split: `read()` returns its encoded bytes (what PIL opens)."""
  source: Any = dataclasses.field(repr=False, compare=False)  # the split's data source
  index: int
  image_key: str
  where: str                                                   # 'name/split', for messages and CSVs

  def read(self) -> bytes:
    return self.source[self.index][self.image_key]

  def __str__(self) -> str:
    return f"{self.where}[{self.index}]"


def prepare_command(name: str, data_dir: str) -> str:
  target = f" --data_dir={data_dir}" if data_dir else ""
  return f"tfds build {name}{target} --file_format={FILE_FORMAT}"


def _builder(name: str, data_dir: str, download: bool):
  # Imported here (each function): only this kind needs TFDS.
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  if not name:
    raise DataError("config.data.kind='tfds' needs config.data.name (a TFDS catalog name, e.g. "
                    "oxford_flowers102)")
  try:
    builder = tfds.builder(name, data_dir=data_dir or None)
  except tfds.core.registered.DatasetNotFoundError as e:
    raise DataError(f"config.data.name={name!r} is not a TFDS dataset "
                    f"({str(e).splitlines()[0]})") from e
  where = data_dir or "TFDS's default data_dir"
  if not builder.is_prepared():
    if not download:
      raise DataError(f"TFDS dataset {name!r} is not prepared under {where}: run "
                      f"`{prepare_command(name, data_dir)}` or set config.data.download=True")
    logging.info("preparing TFDS dataset %s under %s (config.data.download=True)", name, where)
    builder.download_and_prepare(file_format=FILE_FORMAT)
  return builder


def _keys(builder, name: str) -> tuple:
  """(image feature, label feature): the supervised keys, else the only Image and ClassLabel."""
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  features = builder.info.features
  if builder.info.supervised_keys and len(builder.info.supervised_keys) == 2:
    image_key, label_key = builder.info.supervised_keys
  else:
    images = [k for k, f in features.items() if isinstance(f, tfds.features.Image)]
    labels = [k for k, f in features.items() if isinstance(f, tfds.features.ClassLabel)]
    if len(images) != 1 or len(labels) != 1:
      raise DataError(f"TFDS dataset {name!r} has no supervised (image, label) keys and not one "
                      f"Image and one ClassLabel feature: {sorted(features)}")
    image_key, label_key = images[0], labels[0]
  if not isinstance(features[label_key], tfds.features.ClassLabel):
    raise DataError(f"TFDS dataset {name!r}: label feature {label_key!r} is not a ClassLabel")
  return image_key, label_key


def _read_split(builder, name: str, split: str, image_key: str, label_key: str) -> Split:
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  try:
    source = builder.as_data_source(split=split, decoders={image_key: tfds.decode.SkipDecoding()})
  except NotImplementedError as e:  # prepared in another format (tfrecord)
    raise DataError(f"TFDS dataset {name!r} under {builder.data_dir} is not in {FILE_FORMAT} "
                    f"format (random access): run `{prepare_command(name, '')}` into another "
                    "config.data.data_dir") from e
  except ValueError as e:  # an unknown split or a bad slice
    raise DataError(f"TFDS dataset {name!r}: split {split!r}: {str(e).splitlines()[0]}") from e
  labels = []
  for lo in range(0, len(source), LABEL_READ_CHUNK):
    chunk = source.__getitems__(list(range(lo, min(lo + LABEL_READ_CHUNK, len(source)))))
    labels += [int(example[label_key]) for example in chunk]
  where = f"{name}/{split}"
  return Split([TfdsImage(source, i, image_key, where) for i in range(len(source))],
               np.asarray(labels, np.int32))


def load(name: str, data_dir: str, splits: Sequence[str], download: bool) -> Source:
  """The TFDS dataset `name`'s `splits` (TFDS split strings), prepared if `download`."""
  builder = _builder(name, data_dir, download)
  image_key, label_key = _keys(builder, name)
  read = {s: _read_split(builder, name, s, image_key, label_key) for s in splits}
  return Source(name=name, classes=list(builder.info.features[label_key].names), splits=read)
