"""The one seam between the capability packages and Airflow: settings, connections and providers.

The capability packages (``store``, ``trust``, ``alerts``, ``registry`` ...) are plain Python; whatever they
need from the Airflow installation goes through this module:

* :func:`setting` / :func:`setting_bool` — an option of the Airflow configuration (``[section] key``);
* :func:`connection` — an Airflow connection (host, login, password, port, schema, ``extra_dejson``);
* :func:`s3_client` — a boto3 S3 client built from an Airflow AWS connection (amazon provider);
* :func:`send_email` — an e-mail through the SMTP provider's ``SmtpNotifier`` (an Airflow SMTP connection).

Airflow is imported lazily, inside the functions, and only when a function needs it: importing this module
(and so the capability packages) does not import Airflow, and :func:`setting` answers from the environment
without Airflow installed.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

__all__ = [
    "ConnectionLike",
    "ConnectionNotFoundError",
    "ProviderMissingError",
    "connection",
    "s3_client",
    "send_email",
    "setting",
    "setting_bool",
]

_TRUE = {"true", "t", "yes", "y", "on", "1"}
_FALSE = {"false", "f", "no", "n", "off", "0"}


class ConnectionNotFoundError(LookupError):
    """The Airflow connection is not defined (or Airflow, which holds connections, is not installed)."""

    def __init__(self, conn_id: str, reason: str = "is not defined") -> None:
        super().__init__(f"Airflow connection {conn_id!r} {reason}")
        self.conn_id = conn_id


class ProviderMissingError(ImportError):
    """An Airflow provider package a feature needs is not installed; the message says what to install."""


class ConnectionLike(Protocol):
    """What :func:`connection` returns (an Airflow ``Connection``)."""

    conn_id: str
    host: str | None
    login: str | None
    password: str | None
    port: int | None
    schema: str | None

    @property
    def extra_dejson(self) -> dict[str, Any]: ...


# ------------------------------------------------------------------------------------------
# settings
# ------------------------------------------------------------------------------------------
def setting(section: str, key: str, fallback: str | None = None) -> str | None:
    """The option ``[section] key``, stripped of surrounding white space.

    Looked up in the environment variable ``AIRFLOW__<SECTION>__<KEY>`` first (no Airflow import needed),
    then in the Airflow configuration (``airflow.cfg``, ``_CMD``/``_SECRET`` variants): through Airflow's own
    ``conf`` in a process that has imported it (workers, the Dag processor), otherwise from the file itself
    unless only Airflow can resolve the option (a ``_cmd`` / ``_secret`` variant); an empty value counts as
    unset, and so does a configuration that cannot be read. ``fallback``
    when neither has a value.
    """
    env = f"AIRFLOW__{section.upper()}__{key.upper()}"
    value = os.environ.get(env, "").strip()
    if not value:
        from_file = None if "airflow.configuration" in sys.modules else _from_config_file(section, key, env)
        if from_file is not None:
            value = from_file.strip()
        else:
            with contextlib.suppress(Exception):
                from airflow.configuration import conf

                value = (conf.get(section, key, fallback="") or "").strip()
    return value or fallback


def _from_config_file(section: str, key: str, env: str) -> str | None:
    """``[section] key`` read straight from ``airflow.cfg`` (``$AIRFLOW_CONFIG``, else ``$AIRFLOW_HOME/airflow.cfg``,
    else ``~/airflow/airflow.cfg``; ``""`` when the file or the option is absent), for processes that have not
    imported Airflow: importing ``airflow.configuration`` costs seconds, once per process. ``None`` (ask Airflow)
    when the option has a ``_cmd`` / ``_secret`` variant in the file or the environment (only Airflow runs those)
    or the file cannot be parsed."""
    import configparser

    if any(os.environ.get(f"{env}{suffix}") for suffix in ("_CMD", "_SECRET")):  # env: AIRFLOW__<SECTION>__<KEY>
        return None
    home = os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow")
    path = os.environ.get("AIRFLOW_CONFIG") or os.path.join(os.path.expanduser(home), "airflow.cfg")
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        with open(path, encoding="utf-8") as f:
            parser.read_file(f)
    except FileNotFoundError:
        return ""
    except (OSError, configparser.Error, UnicodeDecodeError):
        return None
    if not parser.has_section(section):
        return ""
    if parser.has_option(section, f"{key}_cmd") or parser.has_option(section, f"{key}_secret"):
        return None
    return parser.get(section, key, fallback="")


def setting_bool(section: str, key: str, fallback: bool = False) -> bool:
    """:func:`setting` as a boolean (``true/false``, ``yes/no``, ``on/off``, ``1/0``; case-insensitive).

    Raises:
        ValueError: the value is set but is not a boolean; the message names the option and the variable.
    """
    value = setting(section, key)
    if value is None:
        return fallback
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ValueError(f"[{section}] {key} (env AIRFLOW__{section.upper()}__{key.upper()}) must be true or false, "
                     f"got {value!r}")


# ------------------------------------------------------------------------------------------
# connections
# ------------------------------------------------------------------------------------------
def connection(conn_id: str) -> ConnectionLike:
    """The Airflow connection ``conn_id`` (environment ``AIRFLOW_CONN_<ID>``, secrets backends, metadata DB).

    Raises:
        ConnectionNotFoundError: the connection is not defined, or Airflow is not installed. Any other
            failure of the lookup (an unreachable secrets backend ...) propagates unchanged.
    """
    try:
        try:
            from airflow.sdk import BaseHook
        except ImportError:  # pragma: no cover - older task SDK layout
            from airflow.hooks.base import BaseHook  # type: ignore[no-redef,attr-defined]
    except ImportError:
        raise ConnectionNotFoundError(conn_id, "cannot be read: Airflow is not installed") from None
    try:
        return BaseHook.get_connection(conn_id)
    except Exception as e:
        if _is_not_found(e):
            raise ConnectionNotFoundError(conn_id) from e
        raise


def _is_not_found(error: BaseException) -> bool:
    """Whether ``error`` is Airflow's "connection not defined" (the task SDK's or the core's class)."""
    classes: list[type] = []
    with contextlib.suppress(ImportError):
        from airflow.sdk.exceptions import AirflowNotFoundException

        classes.append(AirflowNotFoundException)
    with contextlib.suppress(ImportError):
        from airflow.exceptions import AirflowNotFoundException as CoreNotFound  # type: ignore[attr-defined]

        classes.append(CoreNotFound)
    return isinstance(error, tuple(classes))


# ------------------------------------------------------------------------------------------
# providers
# ------------------------------------------------------------------------------------------
def s3_client(aws_conn_id: str, *, config: Any = None) -> Any:
    """A boto3 S3 client from the Airflow AWS connection ``aws_conn_id`` (the amazon provider's ``S3Hook``).

    :param config: a ``botocore.config.Config`` (retries, timeouts) for the client.

    Raises:
        ProviderMissingError: apache-airflow-providers-amazon is not installed.
        Exception: whatever the hook raises when it cannot build the client (bad connection, no region ...).
    """
    try:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ProviderMissingError(
            "s3:// storage needs apache-airflow-providers-amazon: pip install apache-airflow-providers-amazon"
        ) from e
    return S3Hook(aws_conn_id=aws_conn_id, config=config).get_conn()


def send_email(*, to: Sequence[str], subject: str, html_content: str, smtp_conn_id: str,
               context: Mapping[str, Any] | None = None) -> None:
    """Send an HTML e-mail through the SMTP provider's ``SmtpNotifier`` (``SmtpHook`` with ``smtp_conn_id``).

    The sender is the connection's ``from_email`` extra, else ``[email] from_email``. Subject and body are
    passed ready-made and ``notify`` is called directly, so no Jinja rendering touches the text.

    Raises:
        ProviderMissingError: apache-airflow-providers-smtp is not installed.
        ValueError: no sender address anywhere (raised by the notifier).
        Exception: whatever SMTP raises (connection refused, authentication ...).
    """
    try:
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ProviderMissingError("e-mail alerts need apache-airflow-providers-smtp: "
                                   "pip install 'airflow-mlops[alerts]'") from e
    notifier = SmtpNotifier(to=list(to), from_email=setting("email", "from_email"), subject=subject,
                            html_content=html_content, smtp_conn_id=smtp_conn_id)
    notifier.notify(dict(context or {}))  # type: ignore[arg-type]  # a plain dict: the notifier reads no key
