// The journal completeness table of the school admin's page: one row per teacher, class
// and subject, sorted by the gateway (`journal(sortBy:, direction:)`) by the column whose
// header the admin pressed; the sorted column carries aria-sort.
import { query } from "./api.js";
import { element, setStatus } from "./page.js";
import { formatMoment, formatShare, formatWindow } from "./school-format.js";

/** The table's columns: header, the API's sort key, how a row shows it. */
const COLUMNS = [
  { title: "Учитель", sortBy: "TEACHER", text: (row) => row.teacher.name },
  { title: "Класс", sortBy: "CLASS", text: (row) => row.schoolClass.name },
  { title: "Предмет", sortBy: "SUBJECT", text: (row) => row.subject.name },
  { title: "Проведено уроков", sortBy: "LESSONS_HELD", count: "lessonsHeld" },
  { title: "С темой", sortBy: "LESSONS_WITH_TOPIC", count: "lessonsWithTopic", share: true },
  {
    title: "С посещаемостью",
    sortBy: "LESSONS_WITH_ATTENDANCE",
    count: "lessonsWithAttendance",
    share: true,
  },
  {
    title: "С домашним заданием",
    sortBy: "LESSONS_WITH_HOMEWORK",
    count: "lessonsWithHomework",
    share: true,
  },
  { title: "С оценками", sortBy: "LESSONS_WITH_MARKS", count: "lessonsWithMarks", share: true },
  { title: "Пустые прошедшие", sortBy: "PAST_LESSONS_EMPTY", count: "pastLessonsEmpty" },
  {
    title: "Последняя запись",
    sortBy: "LAST_ENTRY_AT",
    text: (row) => formatMoment(row.lastEntryAt),
  },
];
const DIRECTION_WORDS = { ASC: "по возрастанию", DESC: "по убыванию" };
const ARIA_SORT = { ASC: "ascending", DESC: "descending" };

/** The first direction of a column: names A→Я, counts largest first, oldest entry first. */
function firstDirection(column) {
  if (column.count) return "DESC";
  return "ASC";
}

function countCell(row, column) {
  const value = row[column.count];
  const cell = element("td", undefined, "number");
  cell.dataset.label = column.title;
  const figure = element("span", undefined, "figure");
  figure.append(element("span", String(value), "count"));
  if (column.share) {
    const share = formatShare(value, row.lessonsHeld);
    if (share) figure.append(" ", element("span", share, "share"));
  }
  cell.append(figure);
  if (column.count === "pastLessonsEmpty" && value > 0) cell.classList.add("attention");
  return cell;
}

function rowElement(row) {
  const tr = document.createElement("tr");
  for (const column of COLUMNS) {
    if (column.count) {
      tr.append(countCell(row, column));
    } else {
      const cell = element(column === COLUMNS[0] ? "th" : "td", column.text(row));
      if (column === COLUMNS[0]) cell.scope = "row";
      cell.dataset.label = column.title;
      tr.append(cell);
    }
  }
  return tr;
}

function totalsElement(totals) {
  const tr = document.createElement("tr");
  const label = element("th", `Всего (строк: ${totals.rows})`);
  label.scope = "row";
  label.colSpan = 3;
  tr.append(label);
  for (const column of COLUMNS.slice(3)) {
    if (column.count) {
      tr.append(countCell(totals, column));
    } else {
      const cell = element("td", formatMoment(totals.lastEntryAt));
      cell.dataset.label = column.title;
      tr.append(cell);
    }
  }
  return tr;
}

export class JournalTable {
  constructor(table, announcer) {
    this.table = table;
    this.announcer = announcer;
    this.sortBy = "PAST_LESSONS_EMPTY";
    this.direction = "DESC";
    this.asked = 0;
    this.where = null;
    this.buildHeader();
  }

  buildHeader() {
    const row = this.table.tHead.rows[0];
    row.replaceChildren();
    for (const column of COLUMNS) {
      const th = document.createElement("th");
      th.scope = "col";
      th.dataset.sortBy = column.sortBy;
      if (column.count) th.className = "number";
      const button = element("button", column.title, "sort");
      button.type = "button";
      button.addEventListener("click", () => this.sortOn(column));
      th.append(button);
      row.append(th);
    }
  }

  markSorted() {
    for (const th of this.table.tHead.rows[0].cells) {
      if (th.dataset.sortBy === this.sortBy) {
        th.setAttribute("aria-sort", ARIA_SORT[this.direction]);
      } else {
        th.removeAttribute("aria-sort");
      }
    }
  }

  async sortOn(column) {
    if (column.sortBy === this.sortBy) {
      this.direction = this.direction === "ASC" ? "DESC" : "ASC";
    } else {
      this.sortBy = column.sortBy;
      this.direction = firstDirection(column);
    }
    try {
      await this.load(this.where);
      setStatus("");
      this.announcer.textContent = `Отсортировано: ${column.title}, ${DIRECTION_WORDS[this.direction]}.`;
    } catch (error) {
      setStatus(error.message, { error: true });
    }
  }

  /** Ask for the journal of `where` ({schoolId, from, to}) in the current order. */
  async load(where) {
    this.where = where;
    const asked = ++this.asked;
    this.table.setAttribute("aria-busy", "true");
    try {
      const data = await query("SchoolJournal", {
        ...where,
        sortBy: this.sortBy,
        direction: this.direction,
      });
      if (asked !== this.asked) return; // a newer request is on its way
      this.show(data.schoolDashboard);
    } finally {
      if (asked === this.asked) this.table.removeAttribute("aria-busy");
    }
  }

  show(dashboard) {
    const { rows, totals } = dashboard.journal;
    this.table.caption.textContent = `Полнота журнала: ${formatWindow(dashboard.from, dashboard.to)}`;
    this.markSorted();
    const body = this.table.tBodies[0];
    if (rows.length === 0) {
      const empty = element("td", "За эти дни уроков не было.", "empty");
      empty.colSpan = COLUMNS.length;
      const tr = document.createElement("tr");
      tr.append(empty);
      body.replaceChildren(tr);
    } else {
      body.replaceChildren(...rows.map(rowElement));
    }
    this.table.tFoot.replaceChildren(totalsElement(totals));
  }
}
