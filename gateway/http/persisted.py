"""Trusted documents: GraphQL documents run by their SHA-256 (persisted operations).

Every lookup happens before anything is parsed, and every step is linear in the request:

- **Registered documents** (build time): every `web/documents/<Name>.graphql` (one
  operation per file), read once when the application starts and kept under the SHA-256
  of the file's exact bytes. `web/documents/manifest.json` ({file name: SHA-256 hex},
  written by `scripts/build-web-documents`) must list exactly those files with those
  hashes, or the application does not start (`DocumentsError`; in dev mode, where the
  documents are being edited, a warning, and the files as they are count). A request
  names one by `documentId` ("sha256:<hex>" or the bare hex: the GraphQL-over-HTTP
  draft's persisted documents), by Apollo's `extensions.persistedQuery.sha256Hash`, or
  by sending its exact text.
- **Automatic persisted queries** (Apollo's protocol, run time): a hash without `query`
  that is neither registered nor remembered is answered HTTP 200 with the protocol's
  `PersistedQueryNotFound` / `PERSISTED_QUERY_NOT_FOUND`, and the client sends the query
  with the hash. The hash must then be the SHA-256 of the text's UTF-8 (otherwise 400
  `PERSISTED_QUERY_HASH_MISMATCH`); once the document validates (`GraphQLEndpoint`
  calls `remember`) it is kept for later requests by hash in a per-process cache bounded
  by entries and bytes (no text longer than the parser accepts), least recently used
  out; SCHOOL_GATEWAY_APQ_REGISTRATION=0 keeps nothing (the query still runs).
- **Cookie sessions** (SCHOOL_GATEWAY_COOKIE_REGISTERED_ONLY, on by default): a request
  authenticated by the browser's session cookie may run registered documents only
  (named by hash or documentId, or sent as their exact text); a free query text or a
  document remembered at run time is refused with 403 `DOCUMENT_NOT_REGISTERED` before
  it is parsed. Bearer-token and anonymous requests are not limited.

The text a hash resolves to is the request's `query` from then on: the document cache
and the response cache (keyed by a digest of the text) treat a document sent by hash
exactly as the same document sent as text.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from gateway.core.bounded_cache import ENTRY_OVERHEAD, BoundedCache
from gateway.core.errors import ErrorCode, HttpError
from gateway.core.settings import PROJECT_ROOT, Settings
from gateway.execution.limits import max_source_chars
from gateway.http.protocol import GraphQLRequest, RequestParameters

log = logging.getLogger(__name__)

DOCUMENTS_DIR: Final = PROJECT_ROOT / "web" / "documents"
DOCUMENT_SUFFIX: Final = ".graphql"
MANIFEST_NAME: Final = "manifest.json"
BUILD_SCRIPT: Final = "scripts/build-web-documents"
APQ_MAX_ENTRIES: Final = 2048
APQ_MAX_BYTES: Final = 8 << 20


class DocumentsError(Exception):
    """The registered documents cannot be used as they are (stale manifest, bad file)."""


def sha256_hex(text: str) -> str:
    """The lower-case hex SHA-256 of a text's UTF-8 bytes (what the protocols hash)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


# --- the build-time registry ---------------------------------------------------------


def document_files(folder: Path = DOCUMENTS_DIR) -> dict[str, bytes]:
    """Every `*.graphql` file of the folder by name, as bytes (nothing if no folder)."""
    if not folder.is_dir():
        return {}
    return {
        path.name: path.read_bytes()
        for path in sorted(folder.iterdir())
        if path.name.endswith(DOCUMENT_SUFFIX) and path.is_file()
    }


def manifest_of(files: Mapping[str, bytes]) -> dict[str, str]:
    """{file name: SHA-256 hex of the file's exact bytes}, in name order."""
    return {name: hashlib.sha256(files[name]).hexdigest() for name in sorted(files)}


def manifest_json(manifest: Mapping[str, str]) -> str:
    """The manifest as `scripts/build-web-documents` writes it."""
    return json.dumps(dict(manifest), indent=2, sort_keys=True) + "\n"


@dataclass(frozen=True, slots=True)
class RegisteredDocument:
    """A document of web/documents/: its file name and text."""

    name: str
    text: str


class RegisteredDocuments:
    """The build-time documents by SHA-256 (hex)."""

    def __init__(self, documents: Mapping[str, RegisteredDocument]) -> None:
        self._by_hash = dict(documents)

    @classmethod
    def load(cls, folder: Path = DOCUMENTS_DIR, *, strict: bool = True) -> RegisteredDocuments:
        """Read the folder's documents; DocumentsError unless its manifest is up to date
        (`strict=False`: a warning, and the files count as they are)."""
        if not folder.is_dir():
            log.warning("no registered documents: %s does not exist", folder)
            return cls({})
        files = document_files(folder)
        expected = manifest_of(files)
        manifest_path = folder / MANIFEST_NAME
        try:
            stored = json.loads(manifest_path.read_bytes()) if manifest_path.exists() else {}
        except ValueError as error:
            raise DocumentsError(f"{manifest_path} is not JSON: {error}") from None
        if stored != expected:
            problem = (
                f"{manifest_path} does not match the documents of {folder}: "
                f"run {BUILD_SCRIPT} (and commit what it writes)"
            )
            if strict:
                raise DocumentsError(problem)
            log.warning("%s", problem)
        documents: dict[str, RegisteredDocument] = {}
        for name, data in files.items():
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as error:
                raise DocumentsError(f"{folder / name} is not UTF-8: {error}") from None
            documents.setdefault(expected[name], RegisteredDocument(name, text))
        return cls(documents)

    def get(self, sha256: str) -> RegisteredDocument | None:
        return self._by_hash.get(sha256)

    def __contains__(self, sha256: object) -> bool:
        return sha256 in self._by_hash

    def __len__(self) -> int:
        return len(self._by_hash)


# --- resolving a request ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Resolved:
    """The request to run, and whether its document is a registered one (None: a text
    sent without a hash, not looked up unless a cookie request needs to know)."""

    request: GraphQLRequest
    registered: bool | None


class PersistedDocuments:
    """Registered documents and the run-time APQ cache of one application."""

    def __init__(
        self,
        settings: Settings,
        registered: RegisteredDocuments | None = None,
        *,
        max_entries: int = APQ_MAX_ENTRIES,
        max_bytes: int = APQ_MAX_BYTES,
    ) -> None:
        if registered is None:
            registered = RegisteredDocuments.load(strict=not settings.dev_mode)
        self.registered = registered
        self._remembered: BoundedCache[str, str] = BoundedCache(max_entries, max_bytes)
        self._max_chars = max_source_chars(settings)
        self._registration = settings.apq_registration
        self._cookie_registered_only = settings.cookie_registered_only

    def resolve(self, params: RequestParameters) -> Resolved:
        """The request with its document's text. HttpError: an unknown hash (HTTP 200
        PERSISTED_QUERY_NOT_FOUND, as the protocol wants), a hash that is not the
        query's (400 PERSISTED_QUERY_HASH_MISMATCH)."""
        if params.document_id is not None:  # registered documents only
            found = self.registered.get(params.document_id)
            if found is None:
                raise _not_found()
            return Resolved(params.with_query(found.text), registered=True)
        sha256 = params.persisted_hash
        if params.query is None:
            if sha256 is None:  # (the protocol module refuses such a request)
                raise HttpError(400, ErrorCode.BAD_REQUEST)
            return self._by_hash(params, sha256)
        if sha256 is None:
            return Resolved(params.with_query(params.query), registered=None)
        if sha256_hex(params.query) != sha256:
            raise HttpError(400, ErrorCode.PERSISTED_QUERY_HASH_MISMATCH)
        registered = sha256 in self.registered
        keep = self._registration and not registered and sha256 not in self._remembered
        request = params.with_query(params.query, persist_as=sha256 if keep else None)
        return Resolved(request, registered=registered)

    def _by_hash(self, params: RequestParameters, sha256: str) -> Resolved:
        found = self.registered.get(sha256)
        if found is not None:
            return Resolved(params.with_query(found.text), registered=True)
        text = self._remembered.get(sha256)
        if text is None:
            raise _not_found()
        return Resolved(params.with_query(text), registered=False)

    def cookie_may_run(self, resolved: Resolved) -> bool:
        """May a request authenticated by the session cookie run this document?"""
        if not self._cookie_registered_only:
            return True
        if resolved.registered is not None:
            return resolved.registered
        return sha256_hex(resolved.request.query) in self.registered

    def remember(self, request: GraphQLRequest) -> None:
        """Keep a validated document sent with its hash (APQ registration), if allowed."""
        if request.persist_as is None or len(request.query) > self._max_chars:
            return
        size = sys.getsizeof(request.query) + sys.getsizeof(request.persist_as) + ENTRY_OVERHEAD
        self._remembered.put(request.persist_as, request.query, size)

    @property
    def remembered(self) -> int:
        """How many documents the run-time cache holds."""
        return len(self._remembered)

    @property
    def remembered_bytes(self) -> int:
        return self._remembered.bytes


def _not_found() -> HttpError:
    # A well-formed GraphQL response with one error, HTTP 200: Apollo's persisted query
    # link then sends the query with its hash.
    return HttpError(200, ErrorCode.PERSISTED_QUERY_NOT_FOUND)


# --- scripts/build-web-documents --------------------------------------------------------


def write_manifest(folder: Path = DOCUMENTS_DIR) -> Path:
    """Write the folder's manifest.json from its documents; returns its path."""
    path = folder / MANIFEST_NAME
    path.write_text(manifest_json(manifest_of(document_files(folder))), encoding="utf-8")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """`scripts/build-web-documents [--check] [--folder DIR]`."""
    parser = argparse.ArgumentParser(
        prog=BUILD_SCRIPT, description="Write web/documents/manifest.json (SHA-256 per file)."
    )
    parser.add_argument("--folder", type=Path, default=DOCUMENTS_DIR, help="documents folder")
    parser.add_argument(
        "--check", action="store_true", help="only check that the manifest is up to date"
    )
    args = parser.parse_args(argv)
    folder: Path = args.folder
    expected = manifest_json(manifest_of(document_files(folder)))
    path = folder / MANIFEST_NAME
    if args.check:
        current = path.read_text(encoding="utf-8") if path.exists() else ""
        if current != expected:
            print(f"{path} is out of date: run {BUILD_SCRIPT}", file=sys.stderr)
            return 1
        print(f"{path} is up to date")
        return 0
    write_manifest(folder)
    print(f"{path}: {len(manifest_of(document_files(folder)))} documents")
    return 0
