"""The metrics' settings (gateway.core.metrics_settings) and their label bounds."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.core.metrics import OTHER, OTHER_CODE, OperationLabels, bounded_code
from gateway.core.metrics_settings import MetricsSettings
from gateway.core.settings_readers import SettingsError


def test_defaults_serve_metrics_on_the_application_port() -> None:
    assert MetricsSettings.from_env({}) == MetricsSettings(
        enabled=True, path="/metrics", port=None, host="127.0.0.1", multiproc_dir=None, folder=None
    )


def test_every_variable_is_read() -> None:
    env = {
        "SCHOOL_GATEWAY_METRICS": "0",
        "SCHOOL_GATEWAY_METRICS_PATH": "/internal/metrics",
        "SCHOOL_GATEWAY_METRICS_PORT": "9100",
        "SCHOOL_GATEWAY_METRICS_HOST": "::1",
        "PROMETHEUS_MULTIPROC_DIR": "/run/school-gateway/prometheus",
        "SCHOOL_GATEWAY_METRICS_DIR": "/run/school-gateway/metrics",
    }
    assert MetricsSettings.from_env(env, main_port=8000) == MetricsSettings(
        enabled=False,
        path="/internal/metrics",
        port=9100,
        host="::1",
        multiproc_dir=Path("/run/school-gateway/prometheus"),
        folder=Path("/run/school-gateway/metrics"),
    )


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("SCHOOL_GATEWAY_METRICS", "maybe", "SCHOOL_GATEWAY_METRICS must be a boolean"),
        ("SCHOOL_GATEWAY_METRICS_PATH", "metrics", "plain absolute path"),
        ("SCHOOL_GATEWAY_METRICS_PATH", "/metrics/", "plain absolute path"),
        ("SCHOOL_GATEWAY_METRICS_PATH", "/a b", "plain absolute path"),
        ("SCHOOL_GATEWAY_METRICS_PATH", "/graphql", "must not be a path the gateway serves"),
        ("SCHOOL_GATEWAY_METRICS_PATH", "/auth/metrics", "must not be a path the gateway"),
        ("SCHOOL_GATEWAY_METRICS_PATH", "/healthz", "must not be a path the gateway serves"),
        ("SCHOOL_GATEWAY_METRICS_PORT", "0", "between 1 and 65535"),
        ("SCHOOL_GATEWAY_METRICS_PORT", "x", "must be an integer"),
        ("SCHOOL_GATEWAY_METRICS_PORT", "8000", "must differ from SCHOOL_GATEWAY_PORT"),
        ("SCHOOL_GATEWAY_METRICS_HOST", "localhost", "must be an IP address"),
        ("SCHOOL_GATEWAY_METRICS_HOST", "0.0.0.0:9100", "must be an IP address"),
    ],
)
def test_bad_values_are_refused_by_name(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        MetricsSettings.from_env({name: value}, main_port=8000)


def test_operation_labels_are_the_registered_then_the_first_names() -> None:
    labels = OperationLabels(registered=["DiaryWeek"], limit=2)
    seen = [labels(name) for name in ("A", "B", "C", "DiaryWeek", "A", "D")]
    assert seen == ["A", "B", OTHER, "DiaryWeek", "A", OTHER]
    assert labels(None) == ""
    assert OperationLabels(limit=5)("X" * 65) == OTHER  # too long for a label


@pytest.mark.parametrize("name", ["Child_112_233_445_95", "Call79125550101", "Born2014_03_05"])
def test_names_with_personal_looking_digits_are_never_labels(name: str) -> None:
    labels = OperationLabels(limit=5)
    assert labels(name) == OTHER
    assert labels("DiaryOf2Children") == "DiaryOf2Children"  # a digit or two is fine


def test_error_codes_outside_the_catalogue_become_other() -> None:
    assert bounded_code("FORBIDDEN") == "FORBIDDEN"
    assert bounded_code("Ivanov-112-233-445-95") == OTHER_CODE
    assert bounded_code(None) == OTHER_CODE
