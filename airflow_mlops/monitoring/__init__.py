"""Monitoring: feature and prediction drift, performance against ground truth, alerts and retraining requests. Plain
Python.
"""
