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
-- The signing key set is read by the gateway, written only by the owner
-- (`school-gateway rotate-signing-key` logs in as DATABASE_OWNER_URL): a gateway login
-- that leaks cannot un-retire a leaked key or make its own kid current.
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON gateway.signing_keys FROM "{gateway_role}";
-- The analytics refresh replaces every row of its tables (DELETE + COPY, so that readers
-- keep the old snapshot): it vacuums them afterwards, or dead rows pile up and every
-- analytics query scans them (13x the live rows after a day of refreshes, measured).
-- MAINTAIN exists from PostgreSQL 17; before it autovacuum's settings below do the work.
DO $$
BEGIN
    IF current_setting('server_version_num')::int >= 170000 THEN
        EXECUTE 'GRANT MAINTAIN ON gateway.analytics_mark_units, gateway.analytics_mark_unit_values, '
            'gateway.analytics_attendance_units, gateway.analytics_lesson_units, '
            'gateway.analytics_assignments TO "{gateway_role}"';
    END IF;
END
$$;
