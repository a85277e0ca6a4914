// The diary page's live updates: the DiaryEvents subscription (web/app/live.js) for all the
// viewer's children. Events for the child shown re-read the page a moment later (several
// at once); a new or changed mark is then highlighted and said in a polite live region
// («Новая отметка: 5 — Математика»). Marks of other children drop what the page kept of
// their averages. An ended session goes to the sign-in page, as every request of the page.
import { signIn } from "./api.js";
import { dayAndMonth } from "./diary-dates.js";
import { subscribe } from "./live.js";
import { element } from "./page.js";

const SETTLE_MS = 300; // events of one write arrive together: one refresh for them
const LONGEST_WAIT_MS = 2000;
const NOTICE_MS = 15_000;
const SESSION_ENDED = new Set(["UNAUTHENTICATED", "TOKEN_EXPIRED", "SESSION_REVOKED"]);
const AVERAGES = new Set(["MarkEvent", "FinalMarkEvent"]);
const SAID = {
  AttendanceEvent: "Посещаемость обновлена",
  HomeworkEvent: "Домашнее задание обновлено",
  LessonTopicEvent: "Тема урока обновлена",
  LessonEvent: "Расписание изменилось",
};

/**
 * Start the live updates of the page `view`: `shownChild()` (the id of the child shown),
 * `shownWeek()` ({ from, to } or undefined), `askedBefore(time)` (was what is shown asked
 * for before `performance.now()` was `time`?), `forget(child)` (drop the child's kept
 * averages) and `refresh()` (read and show the address again, quietly; a promise).
 * Returns `{ tried }`: settles when the stream has opened or its first attempt failed.
 */
export function startLive(view) {
  const notice = liveRegion();
  const pending = { events: [], wanted: false, first: 0, timer: undefined, running: undefined };

  async function flush() {
    pending.timer = undefined;
    if (pending.running) return; // still wanted: flushed again when that one is done
    pending.wanted = false;
    const events = pending.events.splice(0);
    pending.running = view.refresh();
    try {
      await pending.running;
      const child = view.shownChild();
      const shown = events.filter((event) => event.studentId === child);
      highlight(shown);
      say(notice, announcement(shown, view.shownWeek()));
    } finally {
      pending.running = undefined;
      if (pending.wanted) schedule();
    }
  }

  function schedule() {
    pending.wanted = true;
    const now = performance.now();
    if (pending.timer === undefined) pending.first = now;
    clearTimeout(pending.timer);
    const wait = Math.max(0, Math.min(SETTLE_MS, pending.first + LONGEST_WAIT_MS - now));
    pending.timer = setTimeout(flush, wait);
  }

  const live = subscribe("DiaryEvents", {
    onOpen({ resumed }) {
      notice.dataset.live = "open";
      // Opened from now: what was read before may have missed a change.
      if (!resumed && view.askedBefore(performance.now())) schedule();
    },
    onData(data) {
      const event = data.diaryEvents;
      if (!event) return;
      if (AVERAGES.has(event.__typename)) view.forget(event.studentId);
      if (event.studentId !== view.shownChild()) return;
      pending.events.push(event);
      schedule();
    },
    onEnd(code) {
      notice.dataset.live = "stopped";
      if (SESSION_ENDED.has(code)) {
        say(notice, "Сеанс завершён. Войдите снова.");
        signIn();
      } else {
        say(notice, "Новые отметки не приходят сами: обновите страницу.", 0);
      }
    },
  });
  window.addEventListener("pagehide", () => live.stop());
  document.querySelector("form.sign-out")?.addEventListener("submit", () => live.stop());
  return { tried: live.tried };
}

/** The polite status region the changes are said in (kept in the page from the start). */
function liveRegion() {
  const notice = element("p", undefined, "live-notice");
  notice.id = "live-notice";
  notice.setAttribute("role", "status");
  notice.setAttribute("aria-live", "polite");
  notice.setAttribute("aria-atomic", "true");
  notice.dataset.live = "connecting";
  document.getElementById("content").append(notice);
  return notice;
}

function say(notice, text, keepMs = NOTICE_MS) {
  if (!text) return;
  clearTimeout(notice.clearing);
  notice.textContent = text;
  if (keepMs > 0) notice.clearing = setTimeout(() => (notice.textContent = ""), keepMs);
}

/** A new or changed mark shown in the week: marked as such, in words and colour. */
function highlight(events) {
  for (const event of events) {
    if (event.__typename !== "MarkEvent" || event.action === "REMOVED") continue;
    const entry = document.querySelector(`#days [data-mark-id="${CSS.escape(event.markId)}"]`);
    if (!entry || entry.classList.contains("mark-new")) continue;
    entry.classList.add("mark-new");
    const word = event.action === "ADDED" ? "новая" : "изменена";
    entry.querySelector(".mark-about")?.append(element("span", word, "mark-badge"));
  }
}

/** What the events say, each different thing once: «Новая отметка: 5 — Математика». */
function announcement(events, week) {
  const phrases = [];
  for (const event of events) {
    const phrase = eventPhrase(event, week);
    if (phrase && !phrases.includes(phrase)) phrases.push(phrase);
  }
  return phrases.join(". ");
}

function eventPhrase(event, week) {
  if (event.__typename === "MarkEvent") {
    if (!event.mark) return "Отметка удалена";
    const title = event.action === "ADDED" ? "Новая отметка" : "Отметка изменена";
    const outside = event.date && week && (event.date < week.from || event.date > week.to);
    const when = outside ? ` (${dayAndMonth(event.date)})` : "";
    return `${title}: ${event.mark.value} — ${event.mark.subject.name}${when}`;
  }
  if (event.__typename === "FinalMarkEvent") {
    if (!event.finalMark) return "Итоговая отметка удалена";
    return `Итоговая отметка: ${event.finalMark.value} — ${event.finalMark.subject.name}`;
  }
  return SAID[event.__typename];
}
