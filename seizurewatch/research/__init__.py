"""Offline work: datasets, training, evaluation, thresholds, export, reports.

Shares only the model file format (seizurewatch.modelfile) and the preprocessing
(seizurewatch.preprocess) with the daemon, so windows are shaped identically.
"""
