"""Trust boundaries of the registry (see docs/security.md).

* :mod:`~airflow_mlops.trust.types`: which types a stored model may contain (an explicit list of fully
  qualified names, never a module prefix; types that execute code or import are refused whatever a list
  says).
* :mod:`~airflow_mlops.trust.signing`: HMAC signatures over every version's metadata (which carries the
  sha256 of each artifact) and over the registry's state document, keyed by a secret held outside the store.
* :mod:`~airflow_mlops.trust.identity`: who is acting (the Airflow user who triggered a run, the signed-in UI
  user, the CLI's ``--as`` plus the OS user).

Plain Python: no Airflow import at module level (the signing key is looked up through an Airflow connection
only when ``[mlops] signing_conn_id`` is configured).
"""
