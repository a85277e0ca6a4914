// The registry and sign-in sections of the school admin's page (SchoolProblems):
// counts first, then the records and attempts behind them (identifiers come masked).
import { element } from "./page.js";
import { formatMoment } from "./school-format.js";

// As many records as SchoolProblems.graphql asks for (parentFindings(first:)).
const FINDINGS_ASKED = 100;
const ISSUES = {
  NO_SNILS: "нет СНИЛС",
  INVALID_SNILS: "неверный СНИЛС",
  NO_PHONE: "нет телефона",
  MERGED_DATA_DIFFERS: "данные расходятся с записью другой школы",
};
const FIELDS = {
  LAST_NAME: "фамилия",
  FIRST_NAME: "имя",
  PATRONYMIC: "отчество",
  BIRTH_DATE: "дата рождения",
  PHONE: "телефон",
};
const METHODS = {
  ESIA: "Госуслуги",
  PASSWORD: "логин и пароль",
  REFRESH: "продление сеанса",
  CLIENT: "программа",
};

// Columns whose values must not break across lines (masked identifiers, times).
const UNBROKEN = new Set(["СНИЛС", "Телефон", "Когда", "Последняя", "Кто"]);
// Columns of sentences: on a phone their value goes under the column's name.
const LONG = new Set(["Что увидел человек", "Что не так"]);

/**
 * A table under a visible heading: its caption (for screen readers), headers and rows of
 * cell texts, each cell labelled with its column for the phone layout.
 */
function table(caption, headers, rows) {
  const box = element("div", undefined, "table-box");
  const node = element("table", undefined, "data");
  const title = node.createCaption();
  title.textContent = caption;
  title.className = "visually-hidden";
  const head = node.createTHead().insertRow();
  for (const header of headers) {
    const th = element("th", header);
    th.scope = "col";
    head.append(th);
  }
  const body = node.createTBody();
  for (const cells of rows) {
    const tr = body.insertRow();
    cells.forEach((text, index) => {
      const cell = element(index === 0 ? "th" : "td", text);
      if (index === 0) cell.scope = "row";
      if (UNBROKEN.has(headers[index])) cell.classList.add("unbroken");
      if (LONG.has(headers[index])) cell.classList.add("long");
      cell.dataset.label = headers[index];
      tr.append(cell);
    });
  }
  box.append(node);
  return box;
}

function counts(list, entries) {
  list.replaceChildren();
  for (const [label, value] of entries) {
    const item = element("div", undefined, value > 0 ? "count-item" : "count-item zero");
    item.append(element("dt", label), element("dd", String(value)));
    list.append(item);
  }
}

function findingProblems(finding) {
  const words = finding.issues.map((issue) => ISSUES[issue] || issue);
  if (finding.differingFields.length > 0) {
    const fields = finding.differingFields.map((field) => FIELDS[field] || field);
    words.push(`различается: ${fields.join(", ")}`);
  }
  if (finding.otherSchoolIds.length > 0) {
    words.push(`есть в других школах: ${finding.otherSchoolIds.length}`);
  }
  return words.join("; ");
}

function shownOf(shown, total) {
  return shown < total ? ` (показаны первые ${shown} из ${total})` : "";
}

/** The registry section from `registry` of SchoolProblems. */
export function showRegistry(registry) {
  counts(document.getElementById("registry-counts"), [
    ["Записей родителей", registry.parentRecords],
    ["Без СНИЛС", registry.parentsWithoutSnils],
    ["С неверным СНИЛС", registry.parentsWithInvalidSnils],
    ["Без телефона", registry.parentsWithoutPhone],
    ["Расхождения с другими школами", registry.mergedParentsWithDifferences],
    ["Учеников без родителей", registry.studentsWithoutParents],
  ]);
  const findings = registry.parentFindings;
  const findingsBox = document.getElementById("registry-findings");
  if (findings.length === 0) {
    findingsBox.replaceChildren(element("p", "Проблемных записей нет.", "muted"));
  } else {
    findingsBox.replaceChildren(
      table(
        findings.length >= FINDINGS_ASKED
          ? `Записи родителей с проблемами (показаны первые ${findings.length})`
          : `Записи родителей с проблемами: ${findings.length}`,
        ["ФИО", "СНИЛС", "Телефон", "Детей", "Что не так"],
        findings.map((f) => [
          f.fullName,
          f.maskedSnils || "нет",
          f.maskedPhone || "нет",
          String(f.childrenCount),
          findingProblems(f),
        ]),
      ),
    );
  }
  const students = registry.unlinkedStudents;
  const studentsBox = document.getElementById("registry-unlinked");
  if (students.length === 0) {
    studentsBox.replaceChildren(element("p", "У всех учеников есть родитель в реестре.", "muted"));
  } else {
    studentsBox.replaceChildren(
      table(
        `Ученики без родителей${shownOf(students.length, registry.studentsWithoutParents)}`,
        ["Ученик", "Класс"],
        students.map((s) => [s.fullName, s.schoolClass.name]),
      ),
    );
  }
}

function who(attempt) {
  return attempt.login || attempt.maskedSnils || attempt.maskedPhone || "—";
}

/** The sign-in section from `signIns` of SchoolProblems. */
export function showSignIns(signIns) {
  const summary = document.getElementById("sign-ins-summary");
  const outcomes = document.getElementById("sign-ins-outcomes");
  const failures = document.getElementById("sign-ins-failures");
  if (signIns.attempts === 0) {
    summary.textContent = "За эти дни попыток входа людей школы не было.";
    outcomes.replaceChildren(element("p", "Попыток не было.", "muted"));
  } else {
    summary.textContent = `Попыток входа: ${signIns.attempts}, из них неудачных: ${signIns.failures}.`;
    outcomes.replaceChildren(
      table(
        "Попытки входа по исходу",
        ["Исход", "Что увидел человек", "Попыток", "Последняя"],
        signIns.byOutcome.map((o) => [
          o.outcome === "SIGNED_IN" ? "Вошёл" : o.outcome,
          o.message || "—",
          String(o.attempts),
          formatMoment(o.lastAt),
        ]),
      ),
    );
  }
  if (signIns.recentFailures.length === 0) {
    failures.replaceChildren(element("p", "Неудачных попыток нет.", "muted"));
  } else {
    failures.replaceChildren(
      table(
        "Последние неудачные попытки входа",
        ["Когда", "Способ", "Ошибка", "Что увидел человек", "Кто"],
        signIns.recentFailures.map((a) => [
          formatMoment(a.at),
          METHODS[a.method] || a.method,
          a.outcome,
          a.message || "—",
          who(a),
        ]),
      ),
    );
  }
}
