"""airflow_mlops.platform, the one seam to Airflow: settings (environment first, then airflow.cfg, then the
fallback), connections (a clear error naming a missing one), and the capability packages importing no Airflow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from airflow_mlops import platform

ROOT = Path(__file__).resolve().parents[1]


def _run(code: str, home: Path, **env: str) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter with its own AIRFLOW_HOME and no AIRFLOW__MLOPS__* from this process."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__MLOPS__", "AIRFLOW_CONN_"))}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**clean, "AIRFLOW_HOME": str(home), **env})


def test_setting_reads_the_environment_variable_stripped(monkeypatch):
    monkeypatch.setenv("AIRFLOW__MLOPS__PLATFORM_TEST_OPTION", "  s3://bucket/root \n")
    assert platform.setting("mlops", "platform_test_option") == "s3://bucket/root"
    assert platform.setting("MLOPS", "PLATFORM_TEST_OPTION", fallback="x") == "s3://bucket/root"


def test_setting_unset_or_empty_gives_the_fallback(monkeypatch):
    monkeypatch.delenv("AIRFLOW__MLOPS__PLATFORM_TEST_OPTION", raising=False)
    assert platform.setting("mlops", "platform_test_option") is None
    assert platform.setting("mlops", "platform_test_option", fallback="aws_default") == "aws_default"
    monkeypatch.setenv("AIRFLOW__MLOPS__PLATFORM_TEST_OPTION", "   ")
    assert platform.setting("mlops", "platform_test_option", fallback="aws_default") == "aws_default"


@pytest.mark.parametrize(("raw", "expected"), [("true", True), ("Yes", True), ("1", True), ("on", True),
                                               ("false", False), ("NO", False), ("0", False), ("off", False)])
def test_setting_bool_parses_the_usual_spellings(monkeypatch, raw, expected):
    monkeypatch.setenv("AIRFLOW__MLOPS__PLATFORM_TEST_FLAG", raw)
    assert platform.setting_bool("mlops", "platform_test_flag") is expected


def test_setting_bool_unset_is_the_fallback_and_garbage_is_an_error_naming_the_option(monkeypatch):
    monkeypatch.delenv("AIRFLOW__MLOPS__PLATFORM_TEST_FLAG", raising=False)
    assert platform.setting_bool("mlops", "platform_test_flag") is False
    assert platform.setting_bool("mlops", "platform_test_flag", fallback=True) is True
    monkeypatch.setenv("AIRFLOW__MLOPS__PLATFORM_TEST_FLAG", "maybe")
    with pytest.raises(ValueError, match=r"\[mlops\] platform_test_flag \(env AIRFLOW__MLOPS__PLATFORM_TEST_FLAG\) "
                                         r"must be true or false, got 'maybe'"):
        platform.setting_bool("mlops", "platform_test_flag")


def test_setting_reads_airflow_cfg_when_the_environment_has_no_value(tmp_path):
    (tmp_path / "airflow.cfg").write_text("[mlops]\nstorage_uri = s3://from-cfg/root\n")
    proc = _run("""
        from airflow_mlops import platform
        print(platform.setting("mlops", "storage_uri"))
        print(platform.setting("mlops", "not_in_cfg", fallback="fb"))
    """, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["s3://from-cfg/root", "fb"]


def test_the_environment_wins_over_airflow_cfg(tmp_path):
    (tmp_path / "airflow.cfg").write_text("[mlops]\nstorage_uri = s3://from-cfg/root\n")
    proc = _run("""
        from airflow_mlops import platform
        print(platform.setting("mlops", "storage_uri"))
    """, tmp_path, AIRFLOW__MLOPS__STORAGE_URI="file:///from-env")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["file:///from-env"]


def test_connection_returns_the_airflow_connection(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_PLATFORM_TEST_CONN", json.dumps({
        "conn_type": "http", "host": "hooks.example.com", "login": "me", "password": "s3cr3t-value",
        "port": 8443, "schema": "https", "extra": {"endpoint": "/x", "headers": {"X-Team": "ml"}}}))
    conn = platform.connection("platform_test_conn")
    assert (conn.host, conn.login, conn.password, conn.port, conn.schema) == (
        "hooks.example.com", "me", "s3cr3t-value", 8443, "https")
    assert conn.extra_dejson == {"endpoint": "/x", "headers": {"X-Team": "ml"}}


def test_a_missing_connection_is_a_lookup_error_naming_it(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_PLATFORM_NO_SUCH_CONN", raising=False)
    with pytest.raises(platform.ConnectionNotFoundError) as info:
        platform.connection("platform_no_such_conn")
    assert isinstance(info.value, LookupError)
    assert str(info.value) == "Airflow connection 'platform_no_such_conn' is not defined"
    assert info.value.conn_id == "platform_no_such_conn"


def test_without_airflow_settings_come_from_the_environment_and_connections_are_not_found(tmp_path):
    """``import airflow`` made impossible: settings still answer, a connection lookup names the cause."""
    proc = _run("""
        import sys
        sys.modules["airflow"] = None  # any import of airflow now raises ImportError
        from airflow_mlops import platform
        print(platform.setting("mlops", "storage_conn_id", fallback="aws_default"))
        print(platform.setting("mlops", "storage_uri", fallback="none"))
        try:
            platform.connection("smtp_default")
        except platform.ConnectionNotFoundError as e:
            print(e)
    """, tmp_path, AIRFLOW__MLOPS__STORAGE_CONN_ID="s3_prod")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "s3_prod", "none", "Airflow connection 'smtp_default' cannot be read: Airflow is not installed"]


def test_capability_modules_import_without_importing_airflow(tmp_path):
    proc = _run("""
        import airflow_mlops.store.artifacts, airflow_mlops.alerts.delivery, airflow_mlops.trust.signing
        import sys
        loaded = sorted(m for m in sys.modules if m == "airflow" or m.startswith("airflow."))
        assert not loaded, loaded
    """, tmp_path)
    assert proc.returncode == 0, proc.stderr


def test_settings_outside_airflow_read_the_file_without_importing_airflow(tmp_path):
    """A plain process (a script, the CLI, a benchmark) reads airflow.cfg itself: importing Airflow's
    configuration takes seconds. $AIRFLOW_CONFIG names another file."""
    (tmp_path / "airflow.cfg").write_text("[mlops]\nstorage_uri = s3://from-home-cfg/root\n")
    other = tmp_path / "elsewhere.cfg"
    other.write_text("[core]\nload_examples = False\n[mlops]\nstorage_conn_id = s3_team\n")
    proc = _run("""
        import sys
        from airflow_mlops import platform
        print(platform.setting("mlops", "storage_uri", fallback="unset"))
        print(platform.setting("mlops", "storage_conn_id", fallback="aws_default"))
        print(sorted(m for m in sys.modules if m == "airflow.configuration"))
    """, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["s3://from-home-cfg/root", "aws_default", "[]"]
    proc = _run("""
        from airflow_mlops import platform
        print(platform.setting("mlops", "storage_uri", fallback="unset"))
        print(platform.setting("mlops", "storage_conn_id", fallback="aws_default"))
    """, tmp_path, AIRFLOW_CONFIG=str(other))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["unset", "s3_team"]


def test_outside_and_inside_airflow_a_setting_has_the_same_value(tmp_path):
    """The file read and Airflow's own configuration agree, also where the file has a ``_cmd`` variant
    (then the option is asked of Airflow, which alone decides whether to run it)."""
    (tmp_path / "airflow.cfg").write_text("[mlops]\nstorage_uri = s3://plain/root\n"
                                          "signing_key_file_cmd = echo /etc/from-a-command.key\n")
    code = """
        {pre}
        from airflow_mlops import platform
        print(platform.setting("mlops", "storage_uri", fallback="unset"))
        print(platform.setting("mlops", "signing_key_file", fallback="unset"))
    """
    outside = _run(code.format(pre=""), tmp_path)
    inside = _run(code.format(pre="import airflow.configuration"), tmp_path)
    assert outside.returncode == 0 and inside.returncode == 0, outside.stderr + inside.stderr
    assert outside.stdout.splitlines()[-2:] == inside.stdout.splitlines()[-2:]
    assert outside.stdout.splitlines()[-2] == "s3://plain/root"
