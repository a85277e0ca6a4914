"""The SQL statements a request sends: the family query the counting tests ask, and the
gateway's own statements among those counted (asyncpg's housekeeping left out).

asyncpg's housekeeping (type introspection on a connection's first use of a type, the JIT
toggle around it, the reset on release) depends on which pooled connection serves a
statement, not on the request, so the statement-count tests leave it out.
"""

from __future__ import annotations

from gateway.core.db import StatementCounter

ASYNCPG_HOUSEKEEPING = (
    "WITH RECURSIVE typeinfo_tree",
    "SELECT current_setting('jit')",
    "SELECT set_config('jit'",
    "SELECT pg_advisory_unlock_all()",
)

FAMILY_QUERY = """
query Family($from: Date, $to: Date) {
  viewer { role }
  myChildren {
    id fullName school { name } schoolClass { name }
    lastUpdatedAt
    periods { title isCurrent }
    finalMarks { kind value subject { name } }
    averages { subject { name } weightedAverage contributions { reason mark { value } } }
    marks(first: 20) { value workType { name } }
    diary(from: $from, to: $to) {
      lastUpdatedAt
      days { date lessons { number subject { name } teacher { name } status topic
                            replacement { subject { name } }
                            homework { text attachments { url } }
                            marks { value weight } attendance { code } }
             homeworkDue { text } }
      marks { value lesson { topic } }
      homework { text }
      attendance { code minutesLate }
    }
  }
}
"""


def application_statements(counter: StatementCounter) -> list[str]:
    """The statements the gateway itself sent (asyncpg's housekeeping left out)."""
    flat = (" ".join(text.split()) for text in counter.statements)
    return [text for text in flat if not text.startswith(ASYNCPG_HOUSEKEEPING)]
