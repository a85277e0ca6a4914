-- Regional analytics: the gateway's pre-aggregation of the journal into UNITS, rebuilt
-- from the diary_api.analytics_* views (contract_analytics.sql) by
-- resolvers.analytics.sql.refresh (at first use, in the background, and by
-- `school-gateway analytics-refresh`). A refresh replaces every row in one transaction,
-- so readers see either the old or the new snapshot, never a mix.
--
-- A unit is a set of base cells (school x grade x subject x period x work type / code)
-- covering at least k distinct students: a cell that large, or small cells merged up a
-- fixed hierarchy (resolvers/analytics/merge.py). Every released figure is a sum over
-- whole units (docs/analytics.md). Key columns are NULL where a unit has several values
-- ("mixed"); the *_ids / *s arrays hold its values for filters. Rows with published =
-- false are "shadows" (negative ids, no figures, students 0): base cells not published
-- on their own, kept so that their groups are listed as suppressed. `students` (the
-- distinct students, or a lower bound of them when a cell's students were not loaded)
-- is never released.

-- Before issue 12: base cells, small ones dropped (replaced by the units below).
DROP TABLE IF EXISTS gateway.analytics_mark_values, gateway.analytics_mark_cells,
    gateway.analytics_attendance_cells, gateway.analytics_lesson_cells;

CREATE TABLE IF NOT EXISTS gateway.analytics_mark_units (
    unit_id         integer PRIMARY KEY,
    published       boolean NOT NULL,
    level           smallint NOT NULL,     -- 0: a base cell; n: merged at level n
    school_id       integer,
    municipality_id integer,
    grade           smallint,
    subject_id      integer,
    year_id         integer NOT NULL,
    period_scheme   text,
    period_number   smallint,
    work_type_id    integer,
    school_ids       integer[] NOT NULL,
    municipality_ids integer[] NOT NULL,
    grades           smallint[] NOT NULL,
    subject_ids      integer[] NOT NULL,
    period_schemes   text[] NOT NULL,
    period_numbers   smallint[] NOT NULL,
    work_type_ids    integer[] NOT NULL,
    students        integer NOT NULL,
    marks           integer NOT NULL,
    counted_marks   integer NOT NULL,      -- marks counting toward the weighted average
    weighted_sum    numeric NOT NULL,      -- sum of weight * value over the counted marks
    weight_sum      numeric NOT NULL
);

-- The distribution of values per published unit.
CREATE TABLE IF NOT EXISTS gateway.analytics_mark_unit_values (
    unit_id integer NOT NULL,
    value   text NOT NULL,
    marks   integer NOT NULL,
    PRIMARY KEY (unit_id, value)
);

-- Attendance records per unit; a unit has one code (codes never merge).
CREATE TABLE IF NOT EXISTS gateway.analytics_attendance_units (
    unit_id         integer PRIMARY KEY,
    published       boolean NOT NULL,
    level           smallint NOT NULL,
    school_id       integer,
    municipality_id integer,
    grade           smallint,
    subject_id      integer,
    year_id         integer NOT NULL,
    period_scheme   text,
    period_number   smallint,
    code            text NOT NULL,
    school_ids       integer[] NOT NULL,
    municipality_ids integer[] NOT NULL,
    grades           smallint[] NOT NULL,
    subject_ids      integer[] NOT NULL,
    period_schemes   text[] NOT NULL,
    period_numbers   smallint[] NOT NULL,
    students        integer NOT NULL,      -- distinct students with this code in the unit
    records         integer NOT NULL
);

-- Lessons held up to the refresh's "today" per unit: the denominator of the rates.
CREATE TABLE IF NOT EXISTS gateway.analytics_lesson_units (
    unit_id         integer PRIMARY KEY,
    published       boolean NOT NULL,
    level           smallint NOT NULL,
    school_id       integer,
    municipality_id integer,
    grade           smallint,
    subject_id      integer,
    year_id         integer NOT NULL,
    period_scheme   text,
    period_number   smallint,
    school_ids       integer[] NOT NULL,
    municipality_ids integer[] NOT NULL,
    grades           smallint[] NOT NULL,
    subject_ids      integer[] NOT NULL,
    period_schemes   text[] NOT NULL,
    period_numbers   smallint[] NOT NULL,
    students        integer NOT NULL,      -- enrolment of the unit's classes
    lessons         integer NOT NULL,
    student_lessons bigint NOT NULL        -- sum over lessons of the class's enrolment
);

-- Where each base cell went, for the school year (units are sticky: a cell once in a unit
-- stays in it at every later refresh; see resolvers/analytics/merge.py). `detail` is the
-- work type id or the code as text, '' for lessons. Emptied when k changes.
CREATE TABLE IF NOT EXISTS gateway.analytics_assignments (
    kind            text NOT NULL,      -- marks, attendance, lessons
    school_id       integer NOT NULL,
    municipality_id integer NOT NULL,
    grade           smallint NOT NULL,
    subject_id      integer NOT NULL,
    year_id         integer NOT NULL,
    period_scheme   text NOT NULL,
    period_number   smallint NOT NULL,
    detail          text NOT NULL,
    unit_id         integer NOT NULL,
    level           smallint NOT NULL,
    PRIMARY KEY (kind, school_id, grade, subject_id, year_id, period_scheme, period_number,
                 detail)
);

-- When the units were last rebuilt, as of which diary date, for which k, and how long
-- it took. A service whose k differs rebuilds them (units depend on k).
CREATE TABLE IF NOT EXISTS gateway.analytics_refresh (
    id              boolean PRIMARY KEY DEFAULT true CHECK (id),
    refreshed_at    timestamptz NOT NULL,
    as_of           date NOT NULL,
    duration_ms     integer NOT NULL
);
ALTER TABLE gateway.analytics_refresh
    ADD COLUMN IF NOT EXISTS min_group_size integer NOT NULL DEFAULT 0;
-- The placement rules (k and hierarchies) the assignment was made by: other rules start
-- it over (resolvers/analytics/merge.py `rules`).
ALTER TABLE gateway.analytics_refresh ADD COLUMN IF NOT EXISTS rules text NOT NULL DEFAULT '';

-- Replaced wholesale at every refresh: vacuum them as soon as a refresh's dead rows are
-- there (the refresh also vacuums them itself where it may: roles.sql).
DO $$
DECLARE
    replaced text;
BEGIN
    FOREACH replaced IN ARRAY ARRAY['analytics_mark_units', 'analytics_mark_unit_values',
            'analytics_attendance_units', 'analytics_lesson_units', 'analytics_assignments']
    LOOP
        EXECUTE format('ALTER TABLE gateway.%I SET (autovacuum_vacuum_scale_factor = 0, '
            'autovacuum_vacuum_threshold = 1000, autovacuum_analyze_scale_factor = 0, '
            'autovacuum_analyze_threshold = 1000)', replaced);
    END LOOP;
END
$$;
