-- Least privilege: the gateway's login role (created by login_role.sql) reads the
-- contract views only and owns nothing in schema `school`. It writes only to its own
-- schema `gateway`. The role name is substituted for {gateway_role} by gateway.migrations.apply.

REVOKE ALL ON SCHEMA school FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA school FROM "{gateway_role}";
GRANT USAGE ON SCHEMA diary_api TO "{gateway_role}";
GRANT SELECT ON ALL TABLES IN SCHEMA diary_api TO "{gateway_role}";
GRANT USAGE ON SCHEMA gateway TO "{gateway_role}";
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA gateway TO "{gateway_role}";
GRANT USAGE ON ALL SEQUENCES IN SCHEMA gateway TO "{gateway_role}";
-- The gateway's records are append-only, even for the gateway.
REVOKE UPDATE, DELETE, TRUNCATE ON gateway.sign_in_events, gateway.access_audit
    FROM "{gateway_role}";
