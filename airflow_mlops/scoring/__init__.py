"""Batch scoring: model choice and rollout policies (canary, shadow, kill switch, fallback), streaming I/O, merge of
parts, per-row explanations. Plain Python.
"""
