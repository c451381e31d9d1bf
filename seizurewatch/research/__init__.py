"""Offline work: datasets, training, evaluation, thresholds, export, reports. Internal: import the public names
from ``seizurewatch.api``.

Shares only the model file format (seizurewatch.modelfile) and the preprocessing
(seizurewatch.preprocess) with the daemon, so windows are shaped identically.
"""
