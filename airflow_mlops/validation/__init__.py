"""Data validation: Great Expectations suites inferred from data and checked per partition, and
freshness/volume/duplicate checks. Plain Python.
"""
