-- Machine clients of the gateway: school IT dashboards and regional analytics
-- tools, authenticated with the OAuth 2.0 client-credentials grant (POST /oauth/token,
-- auth/signin/client_routes.py). Created, listed and revoked with `school-gateway clients`.
--
-- The secret is 256 bits from the OS's CSPRNG, shown once at creation; only its SHA-256
-- is stored. A slow password hash (argon2) protects guessable human passwords; a random
-- 256-bit secret cannot be guessed, so a fast hash is as safe and keeps the token
-- endpoint from being a CPU lever for whoever sends it wrong secrets.
--
-- The role and scope of a client are read on every request made with its token, in one
-- statement (auth.store.clients.load_client_viewer): a revoked client's tokens stop working
-- on their next request.
CREATE TABLE IF NOT EXISTS gateway.service_clients (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),   -- the client_id
    secret_hash     bytea NOT NULL CHECK (octet_length(secret_hash) = 32),
    name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    role            text NOT NULL CHECK (role IN ('SCHOOL_ADMIN', 'REGIONAL_ANALYST')),
    -- SCHOOL_ADMIN: the schools it may see (at least one); REGIONAL_ANALYST: none.
    school_ids      integer[] NOT NULL DEFAULT '{}',
    -- OAuth scopes it may be granted (auth.viewer.ROLE_SCOPES of its role, or fewer).
    scopes          text[] NOT NULL CHECK (cardinality(scopes) > 0),
    created_at      timestamptz NOT NULL DEFAULT now(),
    revoked_at      timestamptz,
    CONSTRAINT service_clients_schools_by_role CHECK (
        (role = 'SCHOOL_ADMIN' AND cardinality(school_ids) > 0)
        OR (role = 'REGIONAL_ANALYST' AND cardinality(school_ids) = 0)
    )
);
