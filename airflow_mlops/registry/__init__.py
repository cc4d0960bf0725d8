"""The model registry: versions, aliases, approvals and lifecycle behind one promotion policy, the promotion gate,
model cards, the smoke test of a staged model and the train-register-promote flow. Plain Python.
"""
