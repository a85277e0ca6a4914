// The week of the diary: per day the lessons (number, bell times, subject, teacher, room,
// cancellation or replacement in words), the topic, the homework with its due day and
// links, the marks (work type, weight, what for, comment) and the attendance code.
import { clock, dayAndMonth, dayTitle, isWeekend } from "./diary-dates.js";
import { element } from "./page.js";

/** What each attendance code means (../shared/docs/domain.md), for marks and the legend. */
export const ATTENDANCE_CODES = [
  ["Н", "отсутствие на уроке"],
  ["Б", "отсутствие по болезни"],
  ["У", "отсутствие по уважительной причине"],
  ["П", "отсутствие по уважительной причине"],
  ["О", "опоздание"],
  ["ОП", "опоздание"],
];
const CODE_MEANING = new Map(ATTENDANCE_CODES);

const number = new Intl.NumberFormat("ru-RU", { maximumFractionDigits: 2 });

/** A weight or value in Russian: «1,5». */
export function formatNumber(value) {
  return number.format(value);
}

function line(label, text, className) {
  const paragraph = element("p", undefined, className);
  paragraph.append(element("span", `${label}: `, "label"), text);
  return paragraph;
}

function lessonTitle(lesson) {
  const title = element("p", undefined, "lesson-title");
  title.append(element("span", String(lesson.number), "lesson-number"));
  if (lesson.startsAt) {
    const time = element("span", `${clock(lesson.startsAt)}–${clock(lesson.endsAt)}`, "bell");
    title.append(time);
  }
  const shown = lesson.status === "REPLACED" ? lesson.replacement.subject : lesson.subject;
  title.append(element("strong", shown.name, "subject"));
  return title;
}

/** Cancellation or replacement said in words (not by colour or strike-through alone). */
function lessonChange(lesson) {
  if (lesson.status === "CANCELLED") {
    const note = element("p", undefined, "change cancelled");
    note.append(element("strong", "Урок отменён"));
    if (lesson.statusComment) note.append(`. ${lesson.statusComment}`);
    return note;
  }
  if (lesson.status === "REPLACED") {
    const note = element("p", undefined, "change replaced");
    note.append(element("strong", "Замена"));
    const was = `: по расписанию ${lesson.subject.name}, ${lesson.teacher.name}`;
    note.append(was);
    if (lesson.statusComment) note.append(`. ${lesson.statusComment}`);
    return note;
  }
  return undefined;
}

function lessonPlace(lesson) {
  const teacher = lesson.status === "REPLACED" ? lesson.replacement.teacher : lesson.teacher;
  const parts = [teacher.name];
  if (lesson.room) parts.push(`каб. ${lesson.room}`);
  return element("p", parts.join(" · "), "muted lesson-place");
}

/** A link to an attachment, only for http(s) addresses (a `javascript:` or `data:`
 * address written into the journal is shown as plain text, never as a link). */
function attachmentLink(attachment) {
  let url;
  try {
    url = new URL(attachment.url, location.origin);
  } catch {
    url = undefined;
  }
  if (!url || (url.protocol !== "https:" && url.protocol !== "http:")) {
    return element("span", attachment.title);
  }
  const link = element("a", attachment.title);
  link.href = url.href;
  link.rel = "noopener noreferrer";
  return link;
}

function homework(item) {
  const block = element("div", undefined, "homework");
  block.append(line(`Домашнее задание к ${dayAndMonth(item.dueOn)}`, item.text));
  if (item.attachments.length > 0) {
    const links = element("ul", undefined, "attachments");
    for (const attachment of item.attachments) {
      const entry = element("li");
      entry.append(attachmentLink(attachment));
      links.append(entry);
    }
    block.append(links);
  }
  return block;
}

function mark(item) {
  const entry = element("li", undefined, "mark");
  entry.dataset.markId = item.id;
  entry.append(element("span", item.value, "mark-value"));
  const about = element("span", undefined, "mark-about");
  about.append(`${item.workType.name}, вес ${formatNumber(item.weight)}`);
  if (!item.countsInAverage) about.append(" (не учитывается в среднем)");
  if (item.workTitle) about.append(element("span", `За что: ${item.workTitle}`, "mark-for"));
  if (item.comment) about.append(element("span", `Комментарий: ${item.comment}`, "mark-for"));
  entry.append(about);
  return entry;
}

function attendance(record) {
  const meaning = CODE_MEANING.get(record.code) || "отметка о посещаемости";
  const code = element("abbr", record.code, "attendance-code");
  code.title = meaning;
  let words = ` — ${meaning}`;
  if (record.minutesLate) words += `, ${record.minutesLate} мин.`;
  if (record.comment) words += `. ${record.comment}`;
  const text = element("p", undefined, "attendance");
  text.append(code, words);
  return text;
}

function lessonItem(lesson) {
  const item = element("li", undefined, `lesson status-${lesson.status.toLowerCase()}`);
  item.dataset.lessonId = lesson.id;
  item.append(lessonTitle(lesson));
  const change = lessonChange(lesson);
  if (change) item.append(change);
  item.append(lessonPlace(lesson));
  if (lesson.topic) item.append(line("Тема", lesson.topic, "topic"));
  for (const task of lesson.homework) item.append(homework(task));
  if (lesson.marks.length > 0) {
    const marks = element("ul", undefined, "marks");
    marks.setAttribute("aria-label", "Оценки");
    marks.append(...lesson.marks.map(mark));
    item.append(marks);
  }
  if (lesson.attendance) item.append(attendance(lesson.attendance));
  return item;
}

/** Why a day has no lessons: a weekend, holidays (outside every period) or none set. */
function emptyDay(day, inPeriod) {
  if (isWeekend(day.date)) return "Выходной";
  if (!inPeriod(day.date)) return "Каникулы";
  return "Уроков нет";
}

/** The days of a diary as sections; `inPeriod(date)` says whether a day is a school day. */
export function weekDays(diary, inPeriod) {
  return diary.days.map((day) => {
    const section = element("section", undefined, "day");
    section.dataset.date = day.date;
    const heading = element("h3", dayTitle(day.date));
    section.append(heading);
    if (day.lessons.length === 0) {
      section.classList.add("day-empty");
      section.append(element("p", emptyDay(day, inPeriod), "muted"));
      return section;
    }
    const lessons = element("ol", undefined, "lessons");
    lessons.append(...day.lessons.map(lessonItem));
    section.append(lessons);
    return section;
  });
}

/** The legend of the attendance codes (a description list). */
export function attendanceLegend() {
  const list = element("dl", undefined, "legend");
  for (const [code, meaning] of ATTENDANCE_CODES) {
    list.append(element("dt", code), element("dd", meaning));
  }
  return list;
}
