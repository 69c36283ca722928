"""Training: one epoch loop (:mod:`models.train.loop`) and the recipes that run it.

Each recipe is a ``python -m models.train.X`` command (``--help`` for its options) that builds its network
from :mod:`models.nets`, its data from :mod:`models.data` and its loss from :mod:`models.train.losses`, then
hands one training step to :class:`models.train.loop.Loop`:

- ``detectnet_v2``: DetectNet_v2 ResNet-18 from scratch (release ``detectnet_v2_r18``);
- ``prune``: channel pruning of that ResNet-18 with retraining (``detectnet_v2_r18_pruned``);
- ``yolo_student``: the YOLO-style student, alone or distilled (``yolo_student_baseline``);
- ``ultralight``: the pretrained Ultra-Light RFB SSD fine-tuned into the 3 classes (``ultralight_mask``);
- ``yunet``: the pretrained YuNet-n fine-tuned into the 3 classes;
- ``distill_student``: a YuNet-n student distilled from the default detector (docs/distillation.md);
- ``classifier``: the secondary mask classifier on face crops (``mask_classifier``);
- ``synth_masks``: synthetic masks from YuNet's landmarks, an augmentation of ``ultralight --synth``;
- ``bench``: training speed per precision on this CPU.

``python -m models`` prints the whole map; docs/models.md gives the command lines.
"""
