"""Published numbers shown beside a report's own (`--reference`)."""
import dataclasses


@dataclasses.dataclass(frozen=True)
class Reference:
  """Published numbers to show beside ours: strategy -> test top-1 (%)."""
  title: str
  values: dict
  note: str


REFERENCES = {
    "mindcv": Reference(
        "MindCV fine-tuning guide: MobileNetV3-small on FGVC-Aircraft, test top-1 (%)",
        {"linear_probe": 48.66, "freeze_shallow": 76.83, "full_ft": 88.35,
         "full_ft_head_lr": 88.89, "full_ft_deep_lr": 88.68},
        "Single published runs (freeze all features, freeze shallow, full fine-tune, "
        "classifier LR x1.2, deeper-layer LR); their schedule and head LR multiplier may "
        "differ from this sweep's config."),
}
