-- Regional analytics: the gateway's pre-aggregation of the journal into base
-- cells, refreshed from the diary_api.analytics_* views (contract_analytics.sql) by
-- resolvers.analytics.sql.refresh (at first use when empty, in the background, and by
-- `school-gateway analytics-refresh`). A refresh replaces every row in one transaction,
-- so readers see either the old or the new snapshot, never a mix.
--
-- Every released figure is a sum over cells with students >= k (small-group
-- suppression, see docs/analytics.md); `students` itself is never released.

CREATE TABLE IF NOT EXISTS gateway.analytics_mark_cells (
    school_id       integer NOT NULL,
    municipality_id integer NOT NULL,
    grade           smallint NOT NULL,
    subject_id      integer NOT NULL,
    year_id         integer NOT NULL,
    period_scheme   text NOT NULL,
    period_number   smallint NOT NULL,
    work_type_id    integer NOT NULL,
    students        integer NOT NULL,   -- distinct students with a mark in the cell
    marks           integer NOT NULL,
    counted_marks   integer NOT NULL,   -- marks counting toward the weighted average
    weighted_sum    numeric NOT NULL,   -- sum of weight * value over the counted marks
    weight_sum      numeric NOT NULL,
    PRIMARY KEY (school_id, grade, subject_id, year_id, period_scheme, period_number,
                 work_type_id)
);

-- The distribution of values per cell; `students` is the cell's (copied, for filtering
-- without a join).
CREATE TABLE IF NOT EXISTS gateway.analytics_mark_values (
    school_id       integer NOT NULL,
    municipality_id integer NOT NULL,
    grade           smallint NOT NULL,
    subject_id      integer NOT NULL,
    year_id         integer NOT NULL,
    period_scheme   text NOT NULL,
    period_number   smallint NOT NULL,
    work_type_id    integer NOT NULL,
    value           text NOT NULL,
    students        integer NOT NULL,
    marks           integer NOT NULL,
    PRIMARY KEY (school_id, grade, subject_id, year_id, period_scheme, period_number,
                 work_type_id, value)
);

-- Attendance records per cell and code.
CREATE TABLE IF NOT EXISTS gateway.analytics_attendance_cells (
    school_id       integer NOT NULL,
    municipality_id integer NOT NULL,
    grade           smallint NOT NULL,
    subject_id      integer NOT NULL,
    year_id         integer NOT NULL,
    period_scheme   text NOT NULL,
    period_number   smallint NOT NULL,
    code            text NOT NULL,
    students        integer NOT NULL,   -- distinct students with this code in the cell
    records         integer NOT NULL,
    PRIMARY KEY (school_id, grade, subject_id, year_id, period_scheme, period_number, code)
);

-- Lessons held up to the refresh's "today" per cell: the denominator of the rates.
CREATE TABLE IF NOT EXISTS gateway.analytics_lesson_cells (
    school_id       integer NOT NULL,
    municipality_id integer NOT NULL,
    grade           smallint NOT NULL,
    subject_id      integer NOT NULL,
    year_id         integer NOT NULL,
    period_scheme   text NOT NULL,
    period_number   smallint NOT NULL,
    students        integer NOT NULL,   -- students enrolled in the classes of the cell
    lessons         integer NOT NULL,
    student_lessons bigint NOT NULL,    -- sum over lessons of the class's enrolment
    PRIMARY KEY (school_id, grade, subject_id, year_id, period_scheme, period_number)
);

-- When the cells were last refreshed, as of which diary date, and how long it took.
CREATE TABLE IF NOT EXISTS gateway.analytics_refresh (
    id              boolean PRIMARY KEY DEFAULT true CHECK (id),
    refreshed_at    timestamptz NOT NULL,
    as_of           date NOT NULL,
    duration_ms     integer NOT NULL
);
