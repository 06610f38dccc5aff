"""Every configuration key ftlab reads, with its default.

Other configs import this module and override fields:

  python -m ftlab.main --config=configs/default.py --workdir=runs/x \
      --config.data.root=/data/mine --config.model.name=resnet18
"""
import ml_collections


def get_config(arg=None):
  """Returns the default config. `arg` is unused here."""
  del arg
  config = ml_collections.ConfigDict()
  config.seed = 0

  config.model = ml_collections.ConfigDict()
  config.model.name = "resnet18"       # a key of ftlab.models.MODELS
  config.model.pretrained = ""         # registered weights name or file/dir path; "" = random init
  config.model.strict = False          # fail on any missing/unexpected pretrained key
  config.model.dtype = "float32"       # compute dtype: float32 | bfloat16 (params stay float32)
  # random init (scratch runs, re-initialised heads): native | torch. native =
  # the architecture's original framework's init (the one that trained the
  # published weights: torchvision's; TF's for EfficientNet-Lite); torch =
  # each layer type as PyTorch initialises it in the PyTorch original.
  config.model.init = "native"
  # the layers a pretrained checkpoint does not provide (a new head for the task's classes):
  # torch | zero | native (ftlab.models.inits.transfer_init). torch = PyTorch's Linear default
  # U(+-1/sqrt(fan_in)) (timm's reset_classifier); zero = a zero output layer (big_vision's
  # head_zeroinit); native = model.init's scratch init. Chosen by measurement (docs/models.md).
  config.model.head_init = "torch"
  # BatchNorm statistics (ftlab/training/bn_stats.py): batch | frozen | reestimate.
  # batch = the trained layers normalise with batch statistics and update running ones
  # (momentum), frozen layers use their running statistics; frozen = every BatchNorm uses its
  # running statistics, never updated (FrozenBatchNorm; needs a far smaller LR); reestimate =
  # batch, plus running statistics recomputed on `bn_batches` train batches (eval transform, a
  # pure function of seed and step): the trained layers' before every evaluation (precise-BN),
  # and, before LP-FT's probe, the frozen layers' that fine-tuning will train (AdaBN).
  config.model.bn = "reestimate"
  config.model.bn_batches = 20
  # stochastic depth of the last block (ConvNeXt), rising linearly from 0 at the
  # first; 0 = the architecture's default, torchvision's (convnext_tiny 0.1,
  # convnext_small 0.4: what the weights were trained with); < 0 = off. Models
  # without drop-path accept only 0.
  config.model.drop_path_rate = 0.0
  config.model.bn_momentum = 0.0       # > 0: BatchNorm running-stat momentum for every layer (PyTorch convention); 0 = the architecture's own
  # where nn.Conv-style convolutions run: auto | xla | onednn. onednn = ftlab's
  # oneDNN custom calls (CPU only; an error if the library cannot be built);
  # auto = oneDNN on the CPU (XLA, with one log line, where the library cannot
  # be built), XLA on GPU/TPU (ftlab.models.conv.AUTO_CPU, docs/models.md).
  config.model.conv_impl = "auto"
  # where depthwise convs run: auto | ftlab | xla. ftlab = shifted multiply-adds
  # (ftlab.models.depthwise; 5-7x XLA's grouped conv on the CPU), xla = grouped
  # conv (cuDNN on GPU); auto = ftlab on the CPU, xla on GPU/TPU (conv.AUTO_DEPTHWISE).
  config.model.depthwise_impl = "auto"

  config.data = ml_collections.ConfigDict()
  config.data.kind = "imagefolder"     # imagefolder | aircraft | digits | tfds
  config.data.root = ""                # dataset root directory (imagefolder, aircraft, digits)
  config.data.name = ""                # tfds: a TFDS catalog name (oxford_flowers102, food101, ...; name/config:version)
  config.data.data_dir = ""            # tfds: the TFDS data directory; "" = TFDS's default (~/tensorflow_datasets)
  config.data.train_split = "train"    # tfds: TFDS split strings (train[:90%], validation, test)
  config.data.val_split = "val"        # evaluated once at the end on the best checkpoint, for reference; "" = none
  config.data.test_split = "test"      # evaluated once at the end on the best checkpoint; "" = none
  # imagefolder/digits detect the roles of the split folders present (ftlab/data/imagefolder.py):
  # train/ val/ test/ as named above; train/ val/: val is held out (reported as test); train/
  # alone: this share of train is carved out (stratified, by subset_seed) as the test split.
  config.data.test_fraction = 0.2
  config.data.minival_fraction = 0.1   # share of train held out for model selection; 0 = select on val (results.json's selection_split says so)
  # data-size subsets (ftlab/data/subsets.py), for data-size curves: k train images per class
  # (0 = all) or a share of every class (1.0 = all); set at most one. Stratified, drawn by
  # subset_seed (the data seed, also the minival carve-out's; independent of config.seed),
  # nested across sizes for one subset_seed. A class with fewer than k images is an error.
  config.data.train_per_class = 0
  config.data.train_fraction = 1.0
  config.data.subset_seed = 0
  # where the minival of a subset comes from: subset (carved from the subset's own images: a
  # user with k images per class has no more) | full (carved from the whole train split
  # first, the same at every size, the subset drawn from the rest: controlled studies)
  config.data.minival_from = "subset"
  config.data.image_size = 0           # 0 = the model's own input size
  config.data.eval_resize_ratio = 256 / 224
  config.data.rrc_min_scale = 0.08     # random-resized-crop minimum area
  config.data.hflip = True
  config.data.augment = True           # False: train images get the eval transform
  # with augment=False: the eval transform, then a horizontal flip with probability 0.5, the
  # only augmentation; the linear probe's feature cache caches both orientations
  config.data.flip_only = False
  # timm-style policy after crop+flip ('' = none): rand-m7-mstd0.5 (RandAugment;
  # also -n<ops> -p<prob> -mmax<M> -inc1; MindCV's randaug-... is the same),
  # original | v0 (AutoAugment ImageNet), trivialaugment; ftlab/data/autoaugment.py.
  config.data.auto_augment = ""
  config.data.color_jitter = 0.0       # brightness/contrast/saturation strength (timm --color-jitter); ignored when auto_augment is set, as in timm
  config.data.random_erasing = 0.0     # probability of erasing one box (timm re_prob, 'const' mode: filled with the ImageNet mean), last
  config.data.on_bad_image = "skip"    # skip (warn and count) | error
  config.data.num_workers = 4          # decoding threads
  config.data.prefetch = 2             # batches decoded ahead
  config.data.download = False         # aircraft: download the official archive into root; tfds: the builder's download_and_prepare (array_record)
  config.data.annotation = "variant"   # aircraft: variant | family | manufacturer

  config.strategy = ml_collections.ConfigDict()
  config.strategy.name = "full_ft"     # a key of ftlab.training.strategy.PRESETS, or "custom"
  config.strategy.freeze_blocks = 0    # freeze_shallow: leading trunk blocks frozen; 0 = the model's default (ftlab.models.MODELS[name].freeze_blocks)
  config.strategy.head_lr_mult = 10.0  # full_ft_head_lr: classifier LR multiplier
  config.strategy.deep_lr_mults = (1.05, 1.1, 1.15)  # full_ft_deep_lr: last blocks' LR multipliers
  config.strategy.layer_decay = 0.75  # layer_decay: LR multiplier per block from the head down
  config.strategy.bitfit_bn_scale = True  # bitfit: BatchNorm scales train too (biases always do)
  # lp_ft, gradual_unfreeze: the head is first fit by a linear probe of lp_epochs with its own
  # cosine (peak lp_lr_mult x optimizer.lr, no warm-up: linear_probe's recipe at 1); then full
  # fine-tuning's own schedule
  # runs train.num_epochs with optimizer.warmup_epochs and peak optimizer.lr (Kumar et al.).
  config.strategy.lp_epochs = 10.0
  config.strategy.lp_lr_mult = 1.0
  # gradual_unfreeze: during the first unfreeze_fraction of fine-tuning, the trunk's blocks are
  # unfrozen from the top in unfreeze_stages equal groups (ULMFiT's order on LP-FT's budget)
  config.strategy.unfreeze_stages = 4
  config.strategy.unfreeze_fraction = 0.5
  config.strategy.l2sp_alpha = 0.01    # l2sp: pull towards the pretrained weights
  config.strategy.l2sp_beta = 0.01     # l2sp: decay of the new head
  # deterministic train images (data.augment=False, or data.flip_only): linear_probe trains the
  # head on cached trunk features; freeze_shallow trains the top on the activations cached at
  # the freeze boundary (ftlab/training/boundary_cache.py)
  config.strategy.cache_features = True
  config.strategy.cache_max_bytes = 4 * 2**30  # above it the boundary cache is off (logged): train on images
  config.strategy.lora_rank = 8        # lora: inner dimension r of each adapter A @ B
  config.strategy.lora_alpha = 8.0     # lora: the update is (lora_alpha / lora_rank) * A @ B
  config.strategy.lora_targets = ()    # lora: regexes over parameter paths to adapt; () = the model's default (ViT: attention + MLP kernels; CNNs: every conv kernel, not depthwise, and Dense kernel outside the head)
  config.strategy.rules = ()           # custom: ((regex, action), ...), see ftlab/training/strategy.py

  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.name = "sgd"        # sgd | adam | adamw
  config.optimizer.lr = 0.01           # base LR for global batch `train.batch_size`
  config.optimizer.momentum = 0.9
  config.optimizer.nesterov = False
  config.optimizer.weight_decay = 1e-4
  config.optimizer.warmup_epochs = 0.0
  config.optimizer.phase_warmup_epochs = 0.0  # gradual_unfreeze: linear re-warm-up at each later stage's start (0 = none)
  config.optimizer.schedule = "cosine"  # cosine | constant
  config.optimizer.grad_clip_norm = 0.0  # 0 = no clipping

  config.train = ml_collections.ConfigDict()
  config.train.batch_size = 32         # global batch
  config.train.eval_batch_size = 64
  config.train.num_epochs = 10.0
  config.train.label_smoothing = 0.0
  # Mixup/CutMix in the train step (timm's Mixup, batch mode; ftlab/training/mixup.py):
  # 0 alphas = off. Label smoothing applies to the mixed targets; train top-1
  # counts the dominant label. Not with cached features (they are then not cached).
  config.train.mixup_alpha = 0.0       # Beta(alpha, alpha) of mixup's lam (timm --mixup, e.g. 0.8)
  config.train.cutmix_alpha = 0.0      # Beta(alpha, alpha) of CutMix's lam (timm --cutmix, e.g. 1.0)
  config.train.mixup_prob = 1.0        # probability that a batch is mixed at all (timm --mixup-prob)
  config.train.mixup_switch_prob = 0.5  # both alphas > 0: probability of CutMix instead of mixup (timm --mixup-switch-prob)
  # EMA of the trainable weights and updating BatchNorm statistics (timm
  # --model-ema-decay, MindCV ema_decay; ftlab/training/ema.py); 0 = off.
  config.train.ema_decay = 0.0         # e.g. 0.9998; evaluated on minival beside the raw weights
  config.train.select_ema = False      # True: checkpoint selection and test use the EMA weights (needs ema_decay > 0)
  config.train.log_every_steps = 10     # 0 = only at the end
  config.train.eval_every_epochs = 1.0
  config.train.checkpoint_every_steps = 100  # 0 = only at evaluations and the end
  config.train.stop_after_steps = 0    # >0: stop (checkpointed) after this many steps, for tests and preemption drills
  # 0 < f < 1: stop (checkpointed) at step ceil(f * total steps), evaluate minival there
  # and record it in rungs.json; the schedule stays the full run's, so the same
  # command with a larger f (or 0 = to the end) continues exactly (ftlab.study's rungs).
  config.train.stop_at_fraction = 0.0
  config.train.evaluate_held_out = True  # False: results.json without val/test (a study's search trial); re-running with True evaluates the best checkpoint on them once
  # JAX's persistent compilation cache ('' = off): later runs of the same step
  # (other seeds of a sweep, resumes) load it instead of compiling, which on
  # CPU also skips the compiler's ~1 GB memory peak (ftlab/training/runtime.py).
  config.train.compilation_cache_dir = "~/.cache/ftlab/xla"
  return config
