// The answer of the analyst's page: the notes (freshness, k, what is outside the groups),
// the chart and the table of groups with their total.
import { element } from "./page.js";
import { drawChart } from "./analytics-chart.js";

const integer = new Intl.NumberFormat("ru-RU");
const average = new Intl.NumberFormat("ru-RU", {
  minimumFractionDigits: 2,
  maximumFractionDigits: 2,
});
const percent = new Intl.NumberFormat("ru-RU", { style: "percent", maximumFractionDigits: 2 });
const moment = new Intl.DateTimeFormat("ru-RU", {
  day: "2-digit",
  month: "2-digit",
  year: "numeric",
  hour: "2-digit",
  minute: "2-digit",
});

function figure(measure, value) {
  if (value === null || value === undefined) return "—";
  return measure.value === "rate" ? percent.format(value) : average.format(value);
}

function count(value) {
  return value === null || value === undefined ? "—" : integer.format(value);
}

function hiddenText(k) {
  return `скрыто: меньше ${k} учеников`;
}

/** A cell; `label` names its column in the phone layout (rows as cards). */
function cell(tag, text, className, label) {
  const node = element(tag, text, className);
  if (tag === "th") node.scope = "row";
  if (label) node.dataset.label = label;
  return node;
}

function header(measure, dimensions) {
  const row = document.createElement("tr");
  for (const title of [...dimensions.map((d) => d.title), measure.countTitle, measure.valueTitle]) {
    const th = element("th", title);
    th.scope = "col";
    row.append(th);
  }
  row.cells[row.cells.length - 1].className = "number";
  row.cells[row.cells.length - 2].className = "number";
  return row;
}

function figures(row, measure, group) {
  row.append(
    cell("td", count(group[measure.count]), "number count", measure.countTitle),
    cell("td", figure(measure, group[measure.value]), "number value", measure.valueTitle),
  );
}

function groupRow(measure, dimensions, group, k) {
  const row = document.createElement("tr");
  dimensions.forEach((d, index) =>
    row.append(cell(index === 0 ? "th" : "td", d.name(group.key), undefined, d.title)),
  );
  if (group.suppressed) {
    row.className = "suppressed";
    const hidden = cell("td", hiddenText(k), "hidden-figures", "Данные");
    hidden.colSpan = 2;
    row.append(hidden);
  } else {
    figures(row, measure, group);
  }
  return row;
}

function labelRow(measure, dimensions, label, group, className) {
  const row = document.createElement("tr");
  row.className = className;
  const name = cell("th", label);
  name.colSpan = dimensions.length;
  row.append(name);
  figures(row, measure, group);
  return row;
}

function notes(measure, answer, k) {
  document.getElementById("note-k").textContent =
    `Группа, в которой меньше ${k} учеников, отдельно не показывается: её данные объединены ` +
    `с соседними, а строка без собственных данных отмечена «${hiddenText(k)}».`;
  const share = answer.attributedShare;
  const spanning = answer.spanning;
  const line = document.getElementById("note-spanning");
  if (!spanning || share === null || share >= 1) {
    line.textContent = `В строках учтены все ${measure.allWord}.`;
  } else {
    line.textContent =
      `В строках учтено ${percent.format(share)} ${measure.countWord} (attributedShare); ` +
      `остальные ${count(spanning[measure.count])} — «вне групп» (spanning): ` +
      "объединённые малые группы с разными значениями группировки, они входят во «Всего», " +
      "но ни в одну строку.";
  }
}

/** Show the answer `data` (regionalAnalytics) of `measure` grouped by `dimensions`. */
export function showAnswer(measure, dimensions, data) {
  const answer = data[measure.field];
  const k = data.minGroupSize;
  const title = `${measure.title} ${dimensions.map((d) => d.by).join(" и ")}`;
  document.getElementById("answer-title").textContent = title;
  document.getElementById("table-title").textContent = title;
  document.getElementById("freshness").textContent =
    `Данные обновлены ${moment.format(new Date(data.freshness.refreshedAt))}.`;
  notes(measure, answer, k);

  const name = (group) => dimensions.map((d) => d.name(group.key)).join(" · ");
  const values = answer.groups.filter((g) => !g.suppressed).map((g) => g[measure.value] || 0);
  const top = Math.max(0, ...values);
  const max = measure.value === "rate" ? top * 1.1 : Math.max(5, top);
  document.getElementById("chart-title").textContent = measure.chartTitle;
  drawChart(
    document.getElementById("chart"),
    answer.groups.map((g) => ({
      name: name(g),
      value: g[measure.value],
      suppressed: g.suppressed,
      text: g.suppressed ? hiddenText(k) : figure(measure, g[measure.value]),
    })),
    max,
  );

  const table = document.getElementById("groups");
  table.tHead.replaceChildren(header(measure, dimensions));
  const rows = answer.groups.map((g) => groupRow(measure, dimensions, g, k));
  if (answer.spanning) {
    rows.push(
      labelRow(
        measure,
        dimensions,
        "Вне групп (объединённые малые группы)",
        answer.spanning,
        "spanning",
      ),
    );
  }
  table.tBodies[0].replaceChildren(...rows);
  table.tFoot.replaceChildren(labelRow(measure, dimensions, "Всего", answer.total, "total"));
  document.getElementById("answer").hidden = false;
}
