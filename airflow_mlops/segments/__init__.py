"""Per-segment models: one model per value of a segment column, trained, promoted and scored as a group. Plain
Python.
"""
