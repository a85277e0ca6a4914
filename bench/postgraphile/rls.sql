-- The `postgraphile-rls` peer's authorization, as PostGraphile's documentation recommends
-- it: PostGraphile logs in as an authenticator role with no privileges of its own
-- (bench_postgraphile_auth: LOGIN, NOINHERIT, not a superuser, no BYPASSRLS); for each
-- request it switches to the role named by the verified JWT's `role` claim
-- (bench_postgraphile_viewer: NOLOGIN) and passes the other claims as
-- `jwt.claims.<name>` settings (pgSettings), which the row-level security policies below
-- read with current_setting('jwt.claims.<name>', true):
--   jwt.claims.parent_ids  the viewer's parent registry records ("12,345"): a parent sees
--                          the students linked to them in school.parent_students;
--   jwt.claims.student_id  a student viewer sees themself.
-- Student rows (students, marks, attendance) are restricted to those students, class rows
-- (classes, lessons, lesson_topics, homework, homework_attachments) to their classes;
-- the directories (schools, subjects, teachers, work types) are readable by every viewer.
-- The superuser (the `postgraphile` target, the seeding, the gateway's views, owned by
-- the superuser) bypasses these policies. Applied by bench/driver/database.py to every
-- bench database; idempotent.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bench_postgraphile_viewer') THEN
        CREATE ROLE bench_postgraphile_viewer NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bench_postgraphile_auth') THEN
        CREATE ROLE bench_postgraphile_auth LOGIN NOINHERIT;
    END IF;
END
$$;
ALTER ROLE bench_postgraphile_viewer NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
ALTER ROLE bench_postgraphile_auth LOGIN NOINHERIT NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
GRANT bench_postgraphile_viewer TO bench_postgraphile_auth;

-- The viewer's students and classes, from the JWT's claims. SECURITY DEFINER: the links
-- (school.parent_students) are not readable by the viewer. Policies call them as
-- `(SELECT ...)::integer[]`, an InitPlan evaluated once per statement (PostGraphile's performance
-- advice for RLS), not once per row.
CREATE SCHEMA IF NOT EXISTS bench_rls;

CREATE OR REPLACE FUNCTION bench_rls.viewer_student_ids() RETURNS integer[]
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog
AS $$
    SELECT coalesce(array_agg(DISTINCT ids.student_id), '{}')
    FROM (
        SELECT ps.student_id
        FROM school.parent_students ps
        WHERE ps.parent_id = ANY (
            string_to_array(nullif(current_setting('jwt.claims.parent_ids', true), ''), ',')::integer[]
        )
        UNION ALL
        SELECT nullif(current_setting('jwt.claims.student_id', true), '')::integer
    ) ids
    WHERE ids.student_id IS NOT NULL
$$;

CREATE OR REPLACE FUNCTION bench_rls.viewer_class_ids() RETURNS integer[]
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog
AS $$
    SELECT coalesce(array_agg(DISTINCT s.class_id), '{}')
    FROM school.students s
    WHERE s.id = ANY (bench_rls.viewer_student_ids())
$$;

REVOKE ALL ON FUNCTION bench_rls.viewer_student_ids() FROM PUBLIC;
REVOKE ALL ON FUNCTION bench_rls.viewer_class_ids() FROM PUBLIC;
GRANT USAGE ON SCHEMA bench_rls TO bench_postgraphile_viewer;
GRANT EXECUTE ON FUNCTION bench_rls.viewer_student_ids() TO bench_postgraphile_viewer;
GRANT EXECUTE ON FUNCTION bench_rls.viewer_class_ids() TO bench_postgraphile_viewer;

GRANT USAGE ON SCHEMA school TO bench_postgraphile_viewer;
GRANT SELECT ON
    school.schools, school.subjects, school.teachers, school.work_types,
    school.students, school.marks, school.attendance,
    school.classes, school.lessons, school.lesson_topics,
    school.homework, school.homework_attachments
TO bench_postgraphile_viewer;

ALTER TABLE school.students ENABLE ROW LEVEL SECURITY;
ALTER TABLE school.marks ENABLE ROW LEVEL SECURITY;
ALTER TABLE school.attendance ENABLE ROW LEVEL SECURITY;
ALTER TABLE school.classes ENABLE ROW LEVEL SECURITY;
ALTER TABLE school.lessons ENABLE ROW LEVEL SECURITY;
ALTER TABLE school.lesson_topics ENABLE ROW LEVEL SECURITY;
ALTER TABLE school.homework ENABLE ROW LEVEL SECURITY;
ALTER TABLE school.homework_attachments ENABLE ROW LEVEL SECURITY;

DROP POLICY IF EXISTS bench_viewer_students ON school.students;
CREATE POLICY bench_viewer_students ON school.students
    FOR SELECT TO bench_postgraphile_viewer
    USING (id = ANY ((SELECT bench_rls.viewer_student_ids())::integer[]));

DROP POLICY IF EXISTS bench_viewer_marks ON school.marks;
CREATE POLICY bench_viewer_marks ON school.marks
    FOR SELECT TO bench_postgraphile_viewer
    USING (student_id = ANY ((SELECT bench_rls.viewer_student_ids())::integer[]));

DROP POLICY IF EXISTS bench_viewer_attendance ON school.attendance;
CREATE POLICY bench_viewer_attendance ON school.attendance
    FOR SELECT TO bench_postgraphile_viewer
    USING (student_id = ANY ((SELECT bench_rls.viewer_student_ids())::integer[]));

DROP POLICY IF EXISTS bench_viewer_classes ON school.classes;
CREATE POLICY bench_viewer_classes ON school.classes
    FOR SELECT TO bench_postgraphile_viewer
    USING (id = ANY ((SELECT bench_rls.viewer_class_ids())::integer[]));

DROP POLICY IF EXISTS bench_viewer_lessons ON school.lessons;
CREATE POLICY bench_viewer_lessons ON school.lessons
    FOR SELECT TO bench_postgraphile_viewer
    USING (class_id = ANY ((SELECT bench_rls.viewer_class_ids())::integer[]));

DROP POLICY IF EXISTS bench_viewer_homework ON school.homework;
CREATE POLICY bench_viewer_homework ON school.homework
    FOR SELECT TO bench_postgraphile_viewer
    USING (class_id = ANY ((SELECT bench_rls.viewer_class_ids())::integer[]));

DROP POLICY IF EXISTS bench_viewer_lesson_topics ON school.lesson_topics;
CREATE POLICY bench_viewer_lesson_topics ON school.lesson_topics
    FOR SELECT TO bench_postgraphile_viewer
    USING (EXISTS (
        SELECT 1 FROM school.lessons l
        WHERE l.id = lesson_id AND l.class_id = ANY ((SELECT bench_rls.viewer_class_ids())::integer[])
    ));

DROP POLICY IF EXISTS bench_viewer_homework_attachments ON school.homework_attachments;
CREATE POLICY bench_viewer_homework_attachments ON school.homework_attachments
    FOR SELECT TO bench_postgraphile_viewer
    USING (EXISTS (
        SELECT 1 FROM school.homework h
        WHERE h.id = homework_id AND h.class_id = ANY ((SELECT bench_rls.viewer_class_ids())::integer[])
    ));
