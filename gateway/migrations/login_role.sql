-- The gateway's login role (docs/read-contract.md): it logs in and can do nothing else.
-- Not a superuser, no CREATEROLE/CREATEDB/REPLICATION/BYPASSRLS, a member of no role (so
-- SET ROLE and SET SESSION AUTHORIZATION to anyone else fail); its privileges are the
-- grants of roles.sql. Its password is never in this file: gateway.migrations sets it from
-- the embedded server's data folder, or the DBA does. Run by `migrate`, `seed`, `demo`
-- and every start on the embedded server; safe to run repeatedly. An older database's
-- NOLOGIN role of the same name is turned into this login role.
-- The role name is substituted for {gateway_role} by gateway.migrations.apply.
DO $$
DECLARE
    existing pg_roles%ROWTYPE;
    membership record;
BEGIN
    SELECT * INTO existing FROM pg_roles WHERE rolname = '{gateway_role}';
    IF NOT FOUND THEN
        CREATE ROLE "{gateway_role}" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE
            NOREPLICATION NOBYPASSRLS;
        RETURN;
    END IF;
    -- One attribute at a time, and only when it differs: a non-superuser owner with
    -- CREATEROLE may change LOGIN but may not even restate SUPERUSER.
    IF NOT existing.rolcanlogin THEN
        ALTER ROLE "{gateway_role}" LOGIN;
    END IF;
    IF existing.rolsuper THEN
        ALTER ROLE "{gateway_role}" NOSUPERUSER;
    END IF;
    IF existing.rolcreaterole THEN
        ALTER ROLE "{gateway_role}" NOCREATEROLE;
    END IF;
    IF existing.rolcreatedb THEN
        ALTER ROLE "{gateway_role}" NOCREATEDB;
    END IF;
    IF existing.rolreplication THEN
        ALTER ROLE "{gateway_role}" NOREPLICATION;
    END IF;
    IF existing.rolbypassrls THEN
        ALTER ROLE "{gateway_role}" NOBYPASSRLS;
    END IF;
    FOR membership IN
        SELECT granted.rolname AS granted, grantor.rolname AS grantor
        FROM pg_auth_members m
        JOIN pg_roles granted ON granted.oid = m.roleid
        JOIN pg_roles grantor ON grantor.oid = m.grantor
        WHERE m.member = existing.oid
    LOOP
        RAISE WARNING 'revoking membership of % in %: the gateway''s role is a member of no role',
            '{gateway_role}', membership.granted;
        EXECUTE format('REVOKE %I FROM %I GRANTED BY %I',
                       membership.granted, '{gateway_role}', membership.grantor);
    END LOOP;
END
$$;
