"""web/documents/: the registered (trusted) documents, their manifest and the settings of
the cookie "registered documents only" mode."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from graphql import OperationDefinitionNode

from gateway.cli.common import load_settings
from gateway.core.graphql_internals import core_schema
from gateway.core.settings import Settings, SettingsError
from gateway.execution.limits import parse_query, validate_query
from gateway.execution.schema import build_schema
from gateway.http.persisted import (
    DOCUMENTS_DIR,
    MANIFEST_NAME,
    DocumentsError,
    RegisteredDocuments,
    document_files,
    main,
    manifest_json,
    manifest_of,
    sha256_hex,
)

DEV = {"SCHOOL_GATEWAY_DEV": "1"}
PRODUCTION = {"SCHOOL_GATEWAY_JWT_SECRET": "x" * 40}


def test_manifest_is_up_to_date() -> None:
    committed = (DOCUMENTS_DIR / MANIFEST_NAME).read_text(encoding="utf-8")
    assert committed == manifest_json(manifest_of(document_files())), (
        "web/documents/manifest.json is out of date: run scripts/build-web-documents"
    )
    assert "MyChildren.graphql" in json.loads(committed)


def test_every_document_is_one_valid_operation_named_as_its_file() -> None:
    settings = Settings.from_env(DEV)
    schema = core_schema(build_schema(settings))
    files = document_files()
    assert files, "web/documents/ holds no document"
    for name, data in files.items():
        assert not data.startswith(b"\xef\xbb\xbf"), f"{name}: no byte order mark"
        document = parse_query(data.decode("utf-8"), settings)
        assert validate_query(schema, document, settings) == [], name
        operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
        assert len(operations) == 1, f"{name}: one operation per file"
        assert operations[0].name is not None
        assert f"{operations[0].name.value}.graphql" == name


def test_the_registry_keys_documents_by_the_sha256_of_their_bytes() -> None:
    registered = RegisteredDocuments.load()
    text = (DOCUMENTS_DIR / "MyChildren.graphql").read_text(encoding="utf-8")
    found = registered.get(sha256_hex(text))
    assert found is not None and found.name == "MyChildren.graphql" and found.text == text
    assert registered.get("0" * 64) is None


def test_a_stale_manifest_stops_the_start_outside_dev_mode(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "One.graphql").write_text("query One { viewer { role } }\n", encoding="utf-8")
    assert main(["--folder", str(tmp_path), "--check"]) == 1  # no manifest yet
    assert main(["--folder", str(tmp_path)]) == 0
    assert main(["--folder", str(tmp_path), "--check"]) == 0
    assert len(RegisteredDocuments.load(tmp_path)) == 1
    (tmp_path / "One.graphql").write_text("query One { viewer { id } }\n", encoding="utf-8")
    with pytest.raises(DocumentsError, match="build-web-documents"):
        RegisteredDocuments.load(tmp_path)
    with caplog.at_level(logging.WARNING, logger="gateway.http.persisted"):
        lenient = RegisteredDocuments.load(tmp_path, strict=False)
    assert "does not match" in caplog.text
    assert sha256_hex("query One { viewer { id } }\n") in lenient  # the file as it is


def test_cookie_registered_only_is_on_by_default_and_in_the_demo(tmp_path: Path) -> None:
    assert Settings.from_env(DEV).cookie_registered_only
    assert Settings.from_env(PRODUCTION).cookie_registered_only
    assert Settings.from_env(PRODUCTION).apq_registration
    off = Settings.from_env({**DEV, "SCHOOL_GATEWAY_COOKIE_REGISTERED_ONLY": "0"})
    assert not off.cookie_registered_only
    demo = load_settings("demo", {"SCHOOL_GATEWAY_DATA_DIR": str(tmp_path), **PRODUCTION})
    assert demo.dev_mode and demo.graphiql and demo.cookie_registered_only
    with pytest.raises(SettingsError, match="SCHOOL_GATEWAY_APQ_REGISTRATION"):
        Settings.from_env({**DEV, "SCHOOL_GATEWAY_APQ_REGISTRATION": "maybe"})
