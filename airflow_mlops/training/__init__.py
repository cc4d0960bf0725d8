"""Training: estimator construction and fitting, predictions, feature importance, fairness evaluation. Plain Python.
"""
