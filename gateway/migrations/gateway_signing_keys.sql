-- The keys that sign the gateway's tokens (gateway/core/signing_keys.py,
-- auth/signing_keys.py): written by `school-gateway rotate-signing-key`, read by every
-- gateway node at start, every SCHOOL_GATEWAY_SIGNING_KEYS_RELOAD_S seconds and when a
-- token names a kid the node does not know.
--
-- No key material: a key is HMAC-SHA256(SCHOOL_GATEWAY_JWT_SECRET, context || kid), so
-- a dump of this table signs nothing. Kid '0' is the secret itself (the tokens of before
-- kids existed). One key is 'current' (signs), at most one 'previous' (still verifies);
-- 'retired' keys are refused (an expired token of one is still told TOKEN_EXPIRED).
CREATE TABLE IF NOT EXISTS gateway.signing_keys (
    kid             text PRIMARY KEY CHECK (kid ~ '^(0|[0-9a-f]{16})$'),
    state           text NOT NULL CHECK (state IN ('current', 'previous', 'retired')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    retired_at      timestamptz,
    CHECK ((state = 'retired') = (retired_at IS NOT NULL))
);
-- At most one current and one previous key.
CREATE UNIQUE INDEX IF NOT EXISTS signing_keys_live_idx
    ON gateway.signing_keys (state) WHERE state <> 'retired';
