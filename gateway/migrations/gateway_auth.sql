-- Sign-in, sessions and the gateway's records. Schema `gateway`, written by
-- the gateway's role. sign_in_events and access_audit are append-only: the role may
-- INSERT and SELECT them, never UPDATE or DELETE (roles.sql).

-- A signed-in person's session: a browser cookie session or an API client's token pair.
-- Access tokens name their session (`sid`); revoking the session revokes them.
CREATE TABLE IF NOT EXISTS gateway.sessions (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id      uuid NOT NULL REFERENCES gateway.accounts (id) ON DELETE CASCADE,
    kind            text NOT NULL CHECK (kind IN ('BROWSER', 'API')),
    method          text NOT NULL CHECK (method IN ('ESIA', 'PASSWORD', 'DEV_TOKEN')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    revoked_at      timestamptz
);
CREATE INDEX IF NOT EXISTS sessions_account_idx ON gateway.sessions (account_id);

-- Refresh tokens, stored as SHA-256 of the token. Each use rotates: the used token is
-- marked and a new one issued; presenting a used token again revokes the session
-- (a stolen token replayed).
CREATE TABLE IF NOT EXISTS gateway.refresh_tokens (
    token_hash      bytea PRIMARY KEY,
    session_id      uuid NOT NULL REFERENCES gateway.sessions (id) ON DELETE CASCADE,
    issued_at       timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    used_at         timestamptz
);
CREATE INDEX IF NOT EXISTS refresh_tokens_session_idx ON gateway.refresh_tokens (session_id);

-- Sign-in throttling (auth/store/throttle.py, docs/sign-in.md): failed password sign-ins per
-- login (untrusted clients), per device cookie and per client address, and ESIA starts
-- per address. An attempt is counted when admitted and given back when its password is
-- right; `failures` counts within a window starting at `window_started`; the attempt
-- reaching a login's or a device's limit sets `locked_until` (addresses are never
-- locked, only delayed). Changed by atomic upserts only.
CREATE TABLE IF NOT EXISTS gateway.sign_in_throttle (
    key             text PRIMARY KEY,          -- 'login:<casefolded login>', 'device:<nonce>',
                                               -- 'address:<ip>' or 'esia:<ip>'
    failures        integer NOT NULL DEFAULT 0,
    window_started  timestamptz NOT NULL DEFAULT now(),
    locked_until    timestamptz
);

-- ESIA authorization requests in flight: state → nonce, PKCE verifier, where to return,
-- and the hash of the browser that started it.
CREATE TABLE IF NOT EXISTS gateway.esia_requests (
    state           text PRIMARY KEY,
    nonce           text NOT NULL,
    code_verifier   text NOT NULL,
    client_kind     text NOT NULL CHECK (client_kind IN ('BROWSER', 'API')),
    return_to       text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    -- SHA-256 of the browser-binding cookie set by /auth/esia/login (auth/signin/esia_routes.py):
    -- the callback is accepted only from the browser that started the sign-in.
    browser_hash    bytea
);
ALTER TABLE gateway.esia_requests ADD COLUMN IF NOT EXISTS browser_hash bytea;

-- Every sign-in attempt: who tried (masked identifiers only), how, the outcome code and
-- the schools the person was found in, so a school's staff can answer "why can't this
-- parent sign in".
CREATE TABLE IF NOT EXISTS gateway.sign_in_events (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at              timestamptz NOT NULL DEFAULT now(),
    method          text NOT NULL CHECK (method IN ('ESIA', 'PASSWORD', 'REFRESH')),
    outcome         text NOT NULL,             -- gateway.core.errors.ErrorCode or SIGNED_IN
    masked_snils    text,
    masked_phone    text,
    login           text,                      -- as typed; SNILS/phone-like text masked
    school_ids      integer[] NOT NULL DEFAULT '{}',
    account_id      uuid,
    client_address  text
);
CREATE INDEX IF NOT EXISTS sign_in_events_at_idx ON gateway.sign_in_events (at);
CREATE INDEX IF NOT EXISTS sign_in_events_schools_idx
    ON gateway.sign_in_events USING gin (school_ids);
-- The support command looks a person up by masked SNILS / phone (gateway/cli/sign_in_events.py).
CREATE INDEX IF NOT EXISTS sign_in_events_masked_snils_idx
    ON gateway.sign_in_events (masked_snils, at) WHERE masked_snils IS NOT NULL;
CREATE INDEX IF NOT EXISTS sign_in_events_masked_phone_idx
    ON gateway.sign_in_events (masked_phone, at) WHERE masked_phone IS NOT NULL;

-- Every request that returned a student's data: who, which students, which operation.
CREATE TABLE IF NOT EXISTS gateway.access_audit (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at              timestamptz NOT NULL,
    account_id      uuid NOT NULL,
    role            text NOT NULL,
    student_ids     integer[] NOT NULL,
    operation_name  text
);
CREATE INDEX IF NOT EXISTS access_audit_at_idx ON gateway.access_audit (at);
CREATE INDEX IF NOT EXISTS access_audit_students_idx
    ON gateway.access_audit USING gin (student_ids);
-- "Whose data did this account read": by account, newest first.
CREATE INDEX IF NOT EXISTS access_audit_account_idx ON gateway.access_audit (account_id, at);

-- Token requests of machine clients (auth/signin/client_routes.py) are recorded too,
-- as method 'CLIENT' (the client id in `login`). The column's CHECK is replaced
-- idempotently: dropped if present, added again with the extended list.
ALTER TABLE gateway.sign_in_events DROP CONSTRAINT IF EXISTS sign_in_events_method_check;
ALTER TABLE gateway.sign_in_events ADD CONSTRAINT sign_in_events_method_check
    CHECK (method IN ('ESIA', 'PASSWORD', 'REFRESH', 'CLIENT'));

-- Each recorded event carries the id the recorder gave it when it was queued; inserting
-- ON CONFLICT (event_id) DO NOTHING makes a batch retried after an unacknowledged commit
-- (a connection lost during an outage) write every event exactly once. Needs only
-- INSERT: the tables stay append-only for the gateway's role.
ALTER TABLE gateway.sign_in_events ADD COLUMN IF NOT EXISTS event_id uuid;
CREATE UNIQUE INDEX IF NOT EXISTS sign_in_events_event_id_idx
    ON gateway.sign_in_events (event_id);
ALTER TABLE gateway.access_audit ADD COLUMN IF NOT EXISTS event_id uuid;
CREATE UNIQUE INDEX IF NOT EXISTS access_audit_event_id_idx ON gateway.access_audit (event_id);
