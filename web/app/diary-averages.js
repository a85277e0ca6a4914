// Per subject of a period: the weighted average Σ(weight × mark) / Σ(weight) with its
// explanation (every mark: counted with its weight, or not and why), the chart of the
// marks, and the period and year marks of the school year.
import { marksChart } from "./diary-chart.js";
import { shortDate } from "./diary-dates.js";
import { formatNumber } from "./diary-week.js";
import { element } from "./page.js";

const two = new Intl.NumberFormat("ru-RU", { minimumFractionDigits: 2, maximumFractionDigits: 2 });

/** An average as shown: «3,60». */
export function formatAverage(value) {
  return two.format(value);
}

const REASONS = {
  COUNTED: "учтена",
  NOT_COUNTED_BY_TEACHER: "не учтена: учитель не включил её в средний балл",
  NO_NUMERIC_VALUE: "не учтена: у оценки нет числа (зачёт, освобождение)",
  ZERO_WEIGHT: "не учтена: её вес 0",
};

function contributionItem(contribution) {
  const { mark } = contribution;
  const entry = element("li", undefined, contribution.counted ? "counted" : "not-counted");
  const exact =
    mark.numericValue !== null && String(mark.numericValue) !== mark.value
      ? ` (${formatNumber(mark.numericValue)})`
      : "";
  entry.append(element("span", `${mark.value}${exact}`, "mark-value"));
  const weight = contribution.counted ? `, вес ${formatNumber(contribution.weight)}` : "";
  const about = `${shortDate(mark.date)}, ${mark.workType.name}${weight} — `;
  const reason = REASONS[contribution.reason] || contribution.reason;
  entry.append(element("span", `${about}${reason}`));
  return entry;
}

/** «(3 × 1 + 4 × 1,5) / 2,5 = 3,60». */
function formula(average) {
  const counted = average.contributions.filter((item) => item.counted);
  const terms = counted.map(
    (item) => `${formatNumber(item.mark.numericValue)} × ${formatNumber(item.weight)}`,
  );
  const result = `(${terms.join(" + ")}) / ${formatNumber(average.weightSum)}`;
  return `${result} = ${formatAverage(average.weightedAverage)}`;
}

function explanation(average) {
  const details = element("details", undefined, "explanation");
  details.append(element("summary", "Как посчитан средний балл"));
  const skipped = average.contributions.length - average.marksCounted;
  const weights = formatNumber(average.weightSum);
  let summary = `Учтено оценок: ${average.marksCounted}, сумма весов ${weights}.`;
  if (skipped > 0) summary += ` Не учтено: ${skipped}.`;
  details.append(element("p", summary));
  if (average.weightedAverage !== null) details.append(element("p", formula(average), "formula"));
  const list = element("ul", undefined, "contributions");
  list.append(...average.contributions.map(contributionItem));
  details.append(list);
  return details;
}

function averageLine(average) {
  const line = element("p", undefined, "average");
  if (average.weightedAverage === null) {
    line.append("Средний балл не считается: нет оценок, которые в него идут.");
    return line;
  }
  line.append("Средний балл: ");
  const value = element("strong", formatAverage(average.weightedAverage));
  value.dataset.average = "";
  line.append(value);
  return line;
}

function subjectCard(average, period) {
  const card = element("article", undefined, "subject-card");
  card.dataset.subjectId = average.subject.id;
  card.append(element("h3", average.subject.name), averageLine(average));
  const chart = marksChart(
    average.subject.name,
    average.contributions,
    period,
    average.weightedAverage,
  );
  if (chart) card.append(chart);
  card.append(explanation(average));
  return card;
}

/** Cards of the subjects of `period` (a Period); a sentence when there are no marks yet. */
export function averageCards(averages, period) {
  if (averages.length === 0) {
    return [element("p", "В этом периоде оценок пока нет.", "muted empty")];
  }
  return averages.map((average) => subjectCard(average, period));
}

const KIND_ORDER = { PERIOD: 0, YEAR: 1, EXAM: 2 };

function finalLabel(mark) {
  if (mark.kind === "PERIOD") return mark.period ? mark.period.title : "период";
  return mark.kind === "YEAR" ? "год" : "экзамен";
}

/** Period, year and exam marks by subject, as a description list (or a sentence). */
export function finalMarksList(finalMarks) {
  if (finalMarks.length === 0) {
    return element("p", "Итоговых оценок за этот учебный год пока нет.", "muted empty");
  }
  const bySubject = new Map();
  for (const mark of finalMarks) {
    const entry = bySubject.get(mark.subject.id) || { name: mark.subject.name, marks: [] };
    entry.marks.push(mark);
    bySubject.set(mark.subject.id, entry);
  }
  const list = element("dl", undefined, "final-marks");
  const subjects = [...bySubject.values()].sort((a, b) => a.name.localeCompare(b.name, "ru"));
  for (const subject of subjects) {
    subject.marks.sort(
      (a, b) =>
        KIND_ORDER[a.kind] - KIND_ORDER[b.kind] || finalLabel(a).localeCompare(finalLabel(b), "ru"),
    );
    const marks = subject.marks.map((mark) => `${finalLabel(mark)}: ${mark.value}`);
    list.append(element("dt", subject.name), element("dd", marks.join("; ")));
  }
  return list;
}
