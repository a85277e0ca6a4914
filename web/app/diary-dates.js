// Dates of the diary: ISO days ("2026-11-23") as plain strings, weeks from Monday, and
// their Russian wording. Days are computed in UTC so that no time zone shifts them.

const DAY_MS = 24 * 60 * 60 * 1000;
const ISO_DAY = /^\d{4}-\d{2}-\d{2}$/;

const dayMonth = new Intl.DateTimeFormat("ru-RU", {
  day: "numeric",
  month: "long",
  timeZone: "UTC",
});
const shortDay = new Intl.DateTimeFormat("ru-RU", {
  day: "numeric",
  month: "short",
  timeZone: "UTC",
});
const weekday = new Intl.DateTimeFormat("ru-RU", { weekday: "long", timeZone: "UTC" });
const fullDay = new Intl.DateTimeFormat("ru-RU", {
  day: "numeric",
  month: "long",
  year: "numeric",
  timeZone: "UTC",
});
const moment = new Intl.DateTimeFormat("ru-RU", {
  day: "numeric",
  month: "long",
  year: "numeric",
  hour: "2-digit",
  minute: "2-digit",
});

function toDate(iso) {
  return new Date(`${iso}T00:00:00Z`);
}

function toIso(date) {
  return date.toISOString().slice(0, 10);
}

/** The ISO day, or undefined when `text` is not a real calendar day. */
export function parseDay(text) {
  if (!text || !ISO_DAY.test(text)) return undefined;
  const date = toDate(text);
  return Number.isNaN(date.getTime()) || toIso(date) !== text ? undefined : text;
}

export function addDays(iso, days) {
  return toIso(new Date(toDate(iso).getTime() + days * DAY_MS));
}

/** The Monday of the week `iso` is in. */
export function mondayOf(iso) {
  const day = toDate(iso).getUTCDay(); // 0 = Sunday
  return addDays(iso, day === 0 ? -6 : 1 - day);
}

export function isWeekend(iso) {
  const day = toDate(iso).getUTCDay();
  return day === 0 || day === 6;
}

/** Milliseconds since the epoch of a day (for the chart's axis). */
export function dayValue(iso) {
  return toDate(iso).getTime();
}

/** «понедельник, 23 ноября». */
export function dayTitle(iso) {
  return `${weekday.format(toDate(iso))}, ${dayMonth.format(toDate(iso))}`;
}

/** «23 ноября». */
export function dayAndMonth(iso) {
  return dayMonth.format(toDate(iso));
}

/** «23 нояб.». */
export function shortDate(iso) {
  return shortDay.format(toDate(iso));
}

/** «23 ноября 2026 г.». */
export function longDate(iso) {
  return fullDay.format(toDate(iso));
}

/** «23–29 ноября 2026 г.» or «30 ноября – 6 декабря 2026 г.». */
export function weekTitle(from, to) {
  return `${dayAndMonth(from)} – ${longDate(to)}`;
}

/** A moment (ISO date-time) in the reader's time zone: «27 ноября 2026 г. в 17:11». */
export function momentText(isoDateTime) {
  return moment.format(new Date(isoDateTime)).replace(", ", " в ");
}

/** «08:30» from «08:30:00». */
export function clock(time) {
  return time ? time.slice(0, 5) : "";
}
