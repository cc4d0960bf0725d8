"""Model evaluation metrics: what each task type (classification, regression) measures and how. Plain Python.
"""
