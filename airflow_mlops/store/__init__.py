"""Storage: the artifact store (local or S3, atomic writes), partitioned datasets, content fingerprints. Plain
Python.
"""
