"""Model configs: the YAML schema and its parser, the locations a config resolves to, and inference of a starter
config from data. Plain Python.
"""
