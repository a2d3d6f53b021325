"""Segmentation evaluation: 2D U-Nets (own conv encoder, a ResNet / SSL-backbone encoder, or MONAI's
UNet / AttentionUnet) trained with MONAI's Dice+CE on real data, real+synthetic pairs, or DiffBoost's
random merging masks (Zhang et al., "DiffBoost", IEEE TMI 2024, arXiv 2310.12868), selected on the
validation split, reported per case with MONAI's metrics.

One job per module: :mod:`.config` (the typed YAML schema), :mod:`.unet`, :mod:`.resnet_unet` and
:mod:`.monai_nets` (networks), :mod:`.losses` (Dice+CE), :mod:`.augment` (baseline augmentations),
:mod:`.merging` (random merging masks), :mod:`.patches` (patch crops, sliding windows), :mod:`.metrics`
(Dice, IoU, precision, recall, HD95), :mod:`.data` (shard checks and training sets), :mod:`.train`
(one seed: fit and select), :mod:`.run` (folds and seeds, aggregation, result.json), :mod:`.figure` (the PNG),
:mod:`.cli` (``synmed evaluate segment``).
"""
