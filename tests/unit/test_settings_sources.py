"""Where settings come from: the data folder's default, and the variables read by consumers.

A source checkout keeps its data in `<checkout>/.data`; an installed package (no
pyproject.toml next to the gateway package) in the per-user data directory. The response
cache switch and the server stack are read and validated with every other setting.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.core.settings import PROJECT_ROOT, Settings, SettingsError, default_data_dir
from gateway.http.serving import server_stack

DEV = {"SCHOOL_GATEWAY_DEV": "1"}
FAST = ("uvloop", "httptools")
PURE = ("asyncio", "h11")


def _installed(tmp_path: Path) -> Path:
    """A stand-in site-packages folder: the gateway package and no pyproject.toml."""
    site_packages = tmp_path / "site-packages"
    (site_packages / "gateway" / "core").mkdir(parents=True)
    return site_packages


def _checkout(tmp_path: Path) -> Path:
    checkout = tmp_path / "checkout"
    (checkout / "gateway" / "core").mkdir(parents=True)
    (checkout / "pyproject.toml").write_text("[project]\nname = 'school-gateway'\n")
    return checkout


def test_this_checkout_keeps_its_data_in_dot_data() -> None:
    assert (PROJECT_ROOT / "pyproject.toml").is_file()
    assert Settings.from_env(DEV).data_dir == PROJECT_ROOT / ".data"


def test_a_checkout_keeps_dot_data_whatever_xdg_says(tmp_path: Path) -> None:
    checkout = _checkout(tmp_path)
    env = {"XDG_DATA_HOME": str(tmp_path / "xdg"), "HOME": str(tmp_path / "home")}
    assert default_data_dir(env, checkout) == checkout / ".data"


def test_an_installed_package_uses_xdg_data_home(tmp_path: Path) -> None:
    site_packages = _installed(tmp_path)
    env = {"XDG_DATA_HOME": str(tmp_path / "xdg"), "HOME": str(tmp_path / "home")}
    assert default_data_dir(env, site_packages) == tmp_path / "xdg" / "school-gateway"


@pytest.mark.parametrize("xdg", [None, "", "relative/data"])
def test_an_installed_package_falls_back_to_local_share(tmp_path: Path, xdg: str | None) -> None:
    site_packages = _installed(tmp_path)
    env = {"HOME": str(tmp_path / "home")}
    if xdg is not None:
        env["XDG_DATA_HOME"] = xdg  # unset, empty or relative: ignored (XDG base dir spec)
    expected = tmp_path / "home" / ".local" / "share" / "school-gateway"
    assert default_data_dir(env, site_packages) == expected
    assert not default_data_dir(env, site_packages).is_relative_to(site_packages)


def test_data_dir_variable_overrides_the_default(tmp_path: Path) -> None:
    settings = Settings.from_env({**DEV, "SCHOOL_GATEWAY_DATA_DIR": str(tmp_path)})
    assert settings.data_dir == tmp_path


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        *[(None, True), ("", True), ("1", True), (" On ", True), ("yes", True), ("true", True)],
        *[("0", False), ("false", False), ("OFF", False), ("no", False)],
    ],
)
def test_response_cache_switch(value: str | None, expected: bool) -> None:
    env = DEV if value is None else {**DEV, "SCHOOL_GATEWAY_RESPONSE_CACHE": value}
    assert Settings.from_env(env).response_cache is expected


@pytest.mark.parametrize(
    ("value", "stack"),
    [
        *[(None, FAST), ("", FAST), ("fast", FAST), ("uvloop", FAST)],
        *[("asyncio", PURE), (" H11 ", PURE)],
    ],
)
def test_server_stack(value: str | None, stack: tuple[str, str]) -> None:
    env = DEV if value is None else {**DEV, "SCHOOL_GATEWAY_SERVER": value}
    assert server_stack(Settings.from_env(env).server) == stack


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("SCHOOL_GATEWAY_RESPONSE_CACHE", "maybe", "SCHOOL_GATEWAY_RESPONSE_CACHE must be 1 or 0"),
        ("SCHOOL_GATEWAY_SERVER", "tornado", "SCHOOL_GATEWAY_SERVER must be 'fast' or 'asyncio'"),
        ("DATABASE_ANALYTICS_URL", "mysql://x/y", "DATABASE_ANALYTICS_URL must start with"),
        ("SCHOOL_GATEWAY_ANALYTICS_POOL_MAX", "0", "SCHOOL_GATEWAY_ANALYTICS_POOL_MAX must be"),
        ("SCHOOL_GATEWAY_PUBLIC_URL", "ftp://x", "SCHOOL_GATEWAY_PUBLIC_URL must be an http(s)"),
        ("SCHOOL_GATEWAY_COOKIE_SECURE", "sure", "SCHOOL_GATEWAY_COOKIE_SECURE must be a boolean"),
    ],
)
def test_every_part_raises_the_same_settings_error(variable: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({**DEV, variable: value})
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
