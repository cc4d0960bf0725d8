"""Governance: reproducing a registered version from its recorded inputs, and data lineage. Plain Python.
"""
