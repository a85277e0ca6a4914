"""Keeping a process's key set (`settings.signing_keys`, gateway.core.signing_keys) in step
with gateway.signing_keys, which every node shares:

- `KeyReloader`: loads the set when the application starts and again every
  `SCHOOL_GATEWAY_SIGNING_KEYS_RELOAD_S` seconds, in the background (no request waits
  for it, none counts its statement);
- `learn_token_keys`: before a token is verified, a kid this process does not know makes
  it reload (rate-limited: at most once per `SCHOOL_GATEWAY_SIGNING_KEYS_UNKNOWN_KID_S`),
  so a token signed on a node that already has a new key is accepted here at once;
- `keys_ready`: before signing where no application started (the CLI's `dev-token`,
  tests), the set is loaded once.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import Callable

import asyncpg

from auth.store.signing_keys import load_key_rows
from auth.tokens import token_kid
from gateway.core.outage import describe, is_database_unavailable
from gateway.core.settings import Settings
from gateway.core.signing_keys import KeyLoader

log = logging.getLogger(__name__)


def key_loader(pool: asyncpg.Pool) -> KeyLoader:
    """The function that reads the key set through `pool`."""

    async def load() -> list[tuple[str, str]]:
        return list(await load_key_rows(pool))

    return load


async def learn_token_keys(settings: Settings, pool: asyncpg.Pool, *tokens: str | None) -> bool:
    """Reload the key set if one of `tokens` names a kid this process does not know;
    True when one did (whether or not the reload taught it the kid)."""
    keys = settings.signing_keys
    learnt = False
    for token in tokens:
        kid = token_kid(token) if token else None
        if kid is not None and keys.keys.state_of(kid) is None:
            await keys.learn(kid, key_loader(pool))
            learnt = True
    return learnt


async def keys_ready(settings: Settings, pool: asyncpg.Pool) -> None:
    """Load the key set once if this process has not (serving processes load it at start)."""
    await settings.signing_keys.ensure_loaded(key_loader(pool))


class KeyReloader:
    """The key set of a serving process: loaded at `start`, reloaded periodically."""

    def __init__(self, settings: Settings, pool: Callable[[], asyncpg.Pool]) -> None:
        self._keys = settings.signing_keys
        self._pool = pool
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Load the key set (a failure stops the start: a node must not sign with a key
        the others may have retired), then reload it in the background."""
        await self._keys.reload(key_loader(self._pool()))
        self._task = asyncio.create_task(
            self._run(), name="signing-key-reload", context=contextvars.Context()
        )

    async def close(self) -> None:
        """Stop the background reload."""
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._keys.settings.reload_s)
            await self.reload_once()

    async def reload_once(self) -> None:
        """One periodic reload; never raises (but for cancellation): a loop that ended
        would leave the node signing with a stale key and accepting retired ones."""
        try:
            await self._keys.reload(key_loader(self._pool()))
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            # The node keeps its last key set; requests see the outage themselves.
            level = logging.INFO if is_database_unavailable(error) else logging.WARNING
            log.log(level, "signing keys not reloaded: %s", describe(error))
        except Exception:
            # A loop boundary: any other failure (a bug, a row the code does not expect)
            # is logged with its traceback and the loop goes on with the last key set —
            # the one place `except Exception` is right here; it swallows nothing unlogged.
            log.exception("signing keys not reloaded (unexpected error)")
