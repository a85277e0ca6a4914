"""The keys that sign the gateway's tokens: one process's copy of the key set, and how a
key is made from its id.

Every token names its key in the JWT header (`kid`). The key set is shared by every
gateway node through the table gateway.signing_keys (written by `school-gateway
rotate-signing-key`, read by auth.signing_keys): one key is *current* (new tokens are
signed with it), one may be *previous* (still accepted: tokens signed before the last
rotation stay valid until they expire), the others are *retired* (refused).

**Keys are derived, never stored.** A key is HMAC-SHA256(SCHOOL_GATEWAY_JWT_SECRET,
context ‖ kid); the table holds only the random kids, their state and dates. Chosen over
storing random keys encrypted under a key derived from the same secret because:

- a database dump (or a replica, a backup) holds nothing that signs a token; with the
  secret alone an attacker can sign, with either design, the kid-less tokens of before
  (key "0" is the secret itself) until "0" is retired, so storing keys would not make the
  secret less critical — the secret has to be kept as it is today;
- there is nothing to decrypt, re-encrypt or lose: every node computes the same key from
  the same two values, a node with another secret simply verifies nothing (as before);
- a leaked *key* (one derived value, e.g. from a heap dump) reveals neither the secret
  nor any other kid's key (HMAC is a PRF), and two rotations make it worthless.

What rotation does not do: if SCHOOL_GATEWAY_JWT_SECRET itself leaks, every kid's key is
computable (kids are public, in every token); change the secret (every session ends).

Key "0" (`LEGACY_KID`) is the secret itself, so tokens issued before kids existed (they
have none) verify as key "0"; while the table is empty "0" is current and new tokens
carry `kid: "0"`. The first rotation writes "0" as previous; the second retires it.

The key set in memory (`SigningKeys`) is loaded when a serving process starts, reloaded
every `SCHOOL_GATEWAY_SIGNING_KEYS_RELOAD_S` seconds, and when a token names a kid the
process does not know — at most once per `SCHOOL_GATEWAY_SIGNING_KEYS_UNKNOWN_KID_S`, so
a flood of made-up kids costs one statement per that many seconds, not one per request.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import hmac
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from gateway.core.outage import DatabaseUnavailable
from gateway.core.settings_readers import SettingsError, read_int

log = logging.getLogger(__name__)

LEGACY_KID: Final = "0"
# New kids: 64 random bits as 16 lower-case hex digits.
_KID_RE: Final = re.compile(r"[0-9a-f]{16}")
_DERIVATION_CONTEXT: Final = b"school-gateway token signing key\x00"


class KeyState(enum.StrEnum):
    CURRENT = "current"
    PREVIOUS = "previous"
    RETIRED = "retired"


# Rows of gateway.signing_keys as (kid, state), and the function that reads them.
KeyRows = Sequence[tuple[str, str]]
KeyLoader = Callable[[], Awaitable[KeyRows]]


def is_kid(value: object) -> bool:
    """A key id the gateway could have made: "0" or 16 lower-case hex digits."""
    return isinstance(value, str) and (value == LEGACY_KID or _KID_RE.fullmatch(value) is not None)


def new_kid() -> str:
    """A fresh random key id."""
    return secrets.token_hex(8)


def derive_key(secret: str, kid: str) -> bytes:
    """The HMAC key of `kid`: the secret itself for "0", else HMAC-SHA256(secret, context ‖ kid)."""
    if kid == LEGACY_KID:
        return secret.encode()
    return hmac.new(secret.encode(), _DERIVATION_CONTEXT + kid.encode(), hashlib.sha256).digest()


class NoCurrentKeyError(Exception):
    """gateway.signing_keys has keys but none current or previous: nothing may sign (a
    process does not start; a running one refuses to sign, its sign-ins fail)."""

    def __init__(self) -> None:
        super().__init__(
            "gateway.signing_keys has no current and no previous key (only retired ones): "
            "no token can be signed; run `school-gateway rotate-signing-key`"
        )


@dataclass(frozen=True, slots=True)
class KeySet:
    """Which key signs and which verify. The default: "0" (the secret) signs, nothing else.

    `stand_in`: the table has no current key (edited by hand, a failed restore) and its
    previous key signs instead; `current` None: it has neither (see `from_rows`)."""

    current: str | None = LEGACY_KID
    previous: str | None = None
    retired: frozenset[str] = frozenset()
    stand_in: bool = False

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[str, str]]) -> KeySet:
        """The key set of the table's rows; an empty table is the default set.

        Rows without a current key never fall back to the default (that would accept
        key "0" and every retired key again): the previous key signs (`stand_in`, still
        the key the nodes signed with last but one) and the retired keys stay refused;
        with neither a current nor a previous key nothing signs (`current` None) and
        nothing verifies. `rotate-signing-key` repairs both (its new key becomes current)."""
        states: dict[str, list[str]] = {state.value: [] for state in KeyState}
        for kid, state in rows:
            states[KeyState(state).value].append(kid)
        current, previous = states[KeyState.CURRENT], states[KeyState.PREVIOUS]
        retired = frozenset(states[KeyState.RETIRED])
        if current:
            return cls(current[0], previous[0] if previous else None, retired)
        if previous:
            return cls(previous[0], None, retired, stand_in=True)
        if retired:
            return cls(None, None, retired)
        return cls()

    def signing_kid(self) -> str:
        """The kid that signs new tokens; NoCurrentKeyError when there is none."""
        if self.current is None:
            raise NoCurrentKeyError()
        return self.current

    def state_of(self, kid: str) -> KeyState | None:
        """The state of `kid`; None for a kid this set does not know."""
        if kid == self.current:
            return KeyState.CURRENT
        if kid == self.previous:
            return KeyState.PREVIOUS
        return KeyState.RETIRED if kid in self.retired else None

    def accepts(self, kid: str) -> bool:
        """True for the current and the previous key."""
        return kid == self.current or kid == self.previous


@dataclass(frozen=True, slots=True)
class SigningKeySettings:
    """How often a process reloads the key set (`settings.signing_keys.settings`)."""

    reload_s: int = 30
    unknown_kid_s: int = 1

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SigningKeySettings:
        """SCHOOL_GATEWAY_SIGNING_KEYS_RELOAD_S (1–3600, default 30) and
        SCHOOL_GATEWAY_SIGNING_KEYS_UNKNOWN_KID_S (1–60, default 1, not above the former)."""
        reload_s = read_int(env, "SCHOOL_GATEWAY_SIGNING_KEYS_RELOAD_S", 30, low=1, high=3600)
        unknown_kid_s = read_int(
            env, "SCHOOL_GATEWAY_SIGNING_KEYS_UNKNOWN_KID_S", 1, low=1, high=60
        )
        if unknown_kid_s > reload_s:
            raise SettingsError(
                "SCHOOL_GATEWAY_SIGNING_KEYS_UNKNOWN_KID_S must not exceed "
                "SCHOOL_GATEWAY_SIGNING_KEYS_RELOAD_S"
            )
        return cls(reload_s=reload_s, unknown_kid_s=unknown_kid_s)


class SigningKeys:
    """One process's copy of the key set (runtime state carried by `Settings`, so that
    everything that signs or verifies a token reaches it; see the module).

    `keys` is replaced whole by each reload. Reloads are serialised; a reload for an
    unknown kid waits for its turn (at most `unknown_kid_s` after the previous one) and is
    skipped when another reload started after the request arrived: every request of a
    flood shares the same few reloads, and a real new kid is learnt within about a second.
    When that reload failed (the database away), the requests that relied on it fail as
    DatabaseUnavailable (503), not as a bad token.
    """

    def __init__(self, settings: SigningKeySettings | None = None) -> None:
        self.settings = settings or SigningKeySettings()
        self.keys = KeySet()
        self.loaded = False
        self.reloads = 0
        self._lock = asyncio.Lock()
        self._reload_started = float("-inf")
        self._reload_failed = False
        self._unknown_allowed_at = float("-inf")

    def accepts(self, kid: str) -> bool:
        """Whether tokens of `kid` are accepted now (the current or the previous key)."""
        return self.keys.accepts(kid)

    async def reload(self, load: KeyLoader) -> None:
        """Read the key set now (at start, and periodically)."""
        async with self._lock:
            await self._reload(load)

    async def ensure_loaded(self, load: KeyLoader) -> None:
        """Read the key set if this process has not yet (before signing outside `serve`)."""
        if self.loaded:
            return
        async with self._lock:
            if not self.loaded:
                await self._reload(load)

    async def learn(self, kid: str, load: KeyLoader) -> None:
        """Reload for a kid this process does not know (rate-limited, see the class)."""
        if self.keys.state_of(kid) is not None:
            return
        arrived = time.monotonic()
        async with self._lock:
            if self._reload_started >= arrived:
                if self._reload_failed:
                    raise DatabaseUnavailable("the signing keys could not be read")
                return
            wait = self._unknown_allowed_at - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self._unknown_allowed_at = time.monotonic() + self.settings.unknown_kid_s
            await self._reload(load)

    async def _reload(self, load: KeyLoader) -> None:
        self._reload_started = time.monotonic()
        self._reload_failed = True  # until the rows are in
        rows = await load()
        self._reload_failed = False
        keys = KeySet.from_rows(rows)
        if keys.current is None:
            if not self.loaded:
                raise NoCurrentKeyError()  # a process that never had a key set does not start
            log.error("signing keys: %s", NoCurrentKeyError())
        elif keys.stand_in:
            log.error(
                "signing keys: gateway.signing_keys has no current key; the previous key "
                "%s signs until `school-gateway rotate-signing-key` makes a new one current",
                keys.current,
            )
        self.keys = keys
        self.loaded = True
        self.reloads += 1
