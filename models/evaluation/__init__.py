"""Evaluation: what a model outputs, measured as the appliance outputs it.

- ``python -m models.evaluation.evaluate``: AP@0.5 per class after the runtime's decision rule (one class
  per face), NC recall / precision, face recall per size, PR curve and confusion matrix; classifiers and
  the cascade through :mod:`models.evaluation.classifier`;
- ``python -m models.evaluation.decision``: the decision rule (class priors, threshold), chosen on
  ilc2021-dev half a and embedded in the model;
- ``python -m models.evaluation.predict``, ``.benchmark``, ``.compare``: detections of a model over images
  or a video, batch-1 ONNX Runtime latency, the comparison table of every release.
"""
