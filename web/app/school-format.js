// Formatting of the school admin's page: dates, times, shares and the date windows.

const DAY_MS = 24 * 60 * 60 * 1000;
const dayFormat = new Intl.DateTimeFormat("ru-RU", {
  day: "numeric",
  month: "long",
  year: "numeric",
  timeZone: "UTC",
});
const moment = new Intl.DateTimeFormat("ru-RU", {
  day: "2-digit",
  month: "2-digit",
  year: "numeric",
  hour: "2-digit",
  minute: "2-digit",
});

/** A Date of an ISO day ("2026-11-27"), at midnight UTC. */
function utcDay(iso) {
  const [year, month, day] = iso.split("-").map(Number);
  return new Date(Date.UTC(year, month - 1, day));
}

function isoDay(date) {
  return date.toISOString().slice(0, 10);
}

/** «23 ноября 2026 г.» */
export function formatDay(iso) {
  return dayFormat.format(utcDay(iso));
}

/** «23 ноября 2026 г. — 29 ноября 2026 г.», or one day. */
export function formatWindow(from, to) {
  return from === to ? formatDay(from) : `${formatDay(from)} — ${formatDay(to)}`;
}

/** «27.11.2026, 19:00» in the browser's time zone; «—» for none. */
export function formatMoment(iso) {
  return iso ? moment.format(new Date(iso)) : "—";
}

/** «80 %» of part in whole; "" when the whole is 0. */
export function formatShare(part, whole) {
  return whole > 0 ? `${Math.round((100 * part) / whole)} %` : "";
}

/**
 * The dates of a window choice relative to the gateway's `today` (an ISO day):
 * "week" → the API's default (the current week), "weeks4" → the last 28 days,
 * "year" → from 1 September of the school year.
 */
export function windowDates(choice, today) {
  if (!today || choice === "week") return { from: null, to: null };
  const last = utcDay(today);
  if (choice === "weeks4") {
    return { from: isoDay(new Date(last.getTime() - 27 * DAY_MS)), to: today };
  }
  const year = last.getUTCMonth() >= 8 ? last.getUTCFullYear() : last.getUTCFullYear() - 1;
  return { from: `${year}-09-01`, to: today };
}
