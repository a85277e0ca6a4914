// The family diary (parents and students): the viewer's children (every school), one
// child's week (the address says which: /diary?child=<id>&week=<Monday>; without a week,
// the gateway's current week), the averages of the week's period with their explanation
// and chart, the final marks. Navigation changes the address (reload and back work);
// another child's id is a «Нет доступа» page with no data. Changes written meanwhile are
// shown without a reload (diary-live.js).
import { query } from "./api.js";
import { averageCards, finalMarksList } from "./diary-averages.js";
import { addDays, mondayOf, momentText, parseDay, weekTitle } from "./diary-dates.js";
import { startLive } from "./diary-live.js";
import { inAnyPeriod, periodOfWeek } from "./diary-periods.js";
import { attendanceLegend, weekDays } from "./diary-week.js";
import { element, neverFromCache, setStatus, showViewer } from "./page.js";

const ACCESS_DENIED = new Set(["FORBIDDEN", "NOT_FOUND"]);
const SESSION_ENDED = new Set(["UNAUTHENTICATED", "TOKEN_EXPIRED", "SESSION_REVOKED"]);
const byId = (id) => document.getElementById(id);
// The first week waits this long at most for the live stream (see the end of the file).
const LIVE_WAIT_MS = 1500;
const state = {
  children: undefined,
  averages: new Map(),
  currentWeek: undefined,
  run: 0,
  shown: undefined, // { child, from, to } on the page
  askedAt: undefined, // performance.now() when the latest week was asked for
};

class NoAccess extends Error {}

/** The child and week (a Monday, or undefined: the current week) of the address. */
function address() {
  const params = new URLSearchParams(location.search);
  const week = parseDay(params.get("week"));
  return { child: params.get("child"), week: week && mondayOf(week) };
}

/** The address said the canonical way: the week by its Monday, nothing unknown kept. */
function canonicalize(child, week) {
  const params = new URLSearchParams();
  if (child) params.set("child", child);
  if (week) params.set("week", week);
  const query = params.toString();
  const url = query ? `/diary?${query}` : "/diary";
  if (url !== location.pathname + location.search) history.replaceState(null, "", url);
}

function diaryUrl(child, week) {
  const params = new URLSearchParams({ child });
  if (week) params.set("week", week);
  return `/diary?${params}`;
}

function childCard(child) {
  const card = element("li", undefined, "child");
  card.dataset.childId = child.id;
  const heading = element("h2");
  const link = element("a", child.fullName);
  link.dataset.nav = "";
  heading.append(link);
  const klass = element("p", `Класс: ${child.schoolClass ? child.schoolClass.name : "—"}`);
  klass.className = "muted";
  card.append(heading, element("p", child.school.name), klass);
  return card;
}

/** The children as links (kept across navigation, so focus stays), the shown one marked. */
function showChildren(selected, week) {
  const list = byId("children");
  if (list.children.length !== state.children.length) {
    list.replaceChildren(...state.children.map(childCard));
  }
  for (const card of list.children) {
    const link = card.querySelector("a");
    link.href = diaryUrl(card.dataset.childId, week);
    if (card.dataset.childId === selected) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

function showNoAccess() {
  state.shown = undefined;
  byId("children").replaceChildren();
  byId("diary").hidden = true;
  for (const id of ["days", "subjects", "final-marks"]) byId(id).replaceChildren();
  byId("no-access").hidden = false;
  document.title = "Нет доступа — Дневник";
  setStatus("");
}

async function loadChildren() {
  if (state.children === undefined) {
    const data = await query("DiaryChildren");
    showViewer(data.viewer);
    const list = byId("children").parentElement;
    if (data.viewer.role === "STUDENT") list.setAttribute("aria-label", "Ученик");
    state.children = data.myChildren;
  }
  return state.children;
}

async function loadWeek(child, week) {
  const variables = { student: child };
  if (week) Object.assign(variables, { from: week, to: addDays(week, 6) });
  await Promise.race([live.tried, new Promise((done) => setTimeout(done, LIVE_WAIT_MS))]);
  state.askedAt = performance.now();
  const data = await query("DiaryWeek", variables);
  if (!data.student) throw new NoAccess();
  return data.student;
}

async function loadAverages(child, period) {
  const key = `${child}/${period.id}`;
  if (!state.averages.has(key)) {
    const data = await query("DiaryAverages", { student: child, period: period.id });
    if (!data.student) throw new NoAccess();
    state.averages.set(key, data.student);
  }
  return state.averages.get(key);
}

/** Previous / next / current week links around the week of `monday`. */
function weekLinks(child, monday, current) {
  byId("week-prev").href = diaryUrl(child, addDays(monday, -7));
  byId("week-next").href = diaryUrl(child, addDays(monday, 7));
  byId("week-today").href = diaryUrl(child);
  if (current) byId("week-today").setAttribute("aria-current", "page");
  else byId("week-today").removeAttribute("aria-current");
  byId("week-date").value = monday;
}

function showWeek(child, student, current) {
  const { diary } = student;
  byId("week-title").textContent = `Неделя: ${weekTitle(diary.from, diary.to)}`;
  byId("updated").textContent = student.lastUpdatedAt
    ? `Журнал обновлён ${momentText(student.lastUpdatedAt)}`
    : "Журнал пока не заполнялся";
  weekLinks(child, diary.from, current);
  const inPeriod = (iso) => inAnyPeriod(student.periods, iso);
  byId("days").replaceChildren(...weekDays(diary, inPeriod));
  const note = byId("week-note");
  const empty = diary.days.every((day) => day.lessons.length === 0);
  const holidays = !diary.days.some((day) => inPeriod(day.date));
  note.textContent = holidays
    ? "Каникулы: уроков на этой неделе нет."
    : "На этой неделе уроков нет.";
  note.hidden = !empty;
  document.title = `${weekTitle(diary.from, diary.to)} — Дневник`;
}

function showAverages(period, data) {
  byId("averages-title").textContent = `Средние баллы: ${period.title}`;
  byId("subjects").replaceChildren(...averageCards(data.averages, period));
  byId("final-marks").replaceChildren(finalMarksList(data.finalMarks));
}

/**
 * Show what the address asks for; a newer navigation wins over an older one. `quiet`: the
 * same page read again after a change (no «Загрузка…»).
 */
async function show({ quiet = false } = {}) {
  const run = ++state.run;
  const { child, week } = address();
  canonicalize(child, week);
  if (!quiet) setStatus("Загрузка…");
  // The links move at once: a second click before the week arrives goes one week further.
  const known = child || (state.children && state.children[0] && state.children[0].id);
  const monday = week || state.currentWeek;
  if (known && monday) weekLinks(known, monday, !week);
  try {
    // With the child in the address its week is asked for at once, with the children.
    const early = child ? loadWeek(child, week) : undefined;
    early?.catch(() => {}); // awaited below, or abandoned when the child is not ours
    const children = await loadChildren();
    if (children.length === 0) {
      setStatus("Дети не найдены в реестрах школ.");
      return;
    }
    const selected = child || children[0].id;
    if (!children.some((item) => item.id === selected)) throw new NoAccess();
    byId("diary").setAttribute("aria-busy", "true");
    const student = await (early || loadWeek(selected, week));
    if (run !== state.run) return;
    if (!week) state.currentWeek = student.diary.from;
    byId("no-access").hidden = true;
    showChildren(selected, week);
    showWeek(selected, student, !week);
    state.shown = { child: selected, from: student.diary.from, to: student.diary.to };
    byId("diary").hidden = false;
    setStatus(""); // the week is there; the averages below come into their own section
    const { from, to } = student.diary;
    const period = periodOfWeek(student.periods, from, to);
    if (period) {
      const averages = await loadAverages(selected, period);
      if (run !== state.run) return;
      showAverages(period, averages);
    }
    setStatus("");
  } catch (error) {
    if (run !== state.run) return;
    if (error instanceof NoAccess || ACCESS_DENIED.has(error.code)) showNoAccess();
    else if (await sessionAlive()) setStatus(error.message, { error: true });
  } finally {
    if (run === state.run) byId("diary").removeAttribute("aria-busy");
  }
}

/**
 * After an error: is the session still there? Without a cookie a request is anonymous and
 * may be refused for another reason first (e.g. the anonymous cost budget); asking who is
 * signed in sends an ended session to the sign-in page (api.js).
 */
async function sessionAlive() {
  try {
    await query("DiaryChildren");
    return true;
  } catch (error) {
    return !SESSION_ENDED.has(error.code);
  }
}

function navigate(url) {
  history.pushState(null, "", url);
  show();
}

function listen() {
  document.addEventListener("click", (event) => {
    const link = event.target.closest("a[data-nav]");
    if (!link || event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey) return;
    event.preventDefault();
    if (link.href !== location.href) navigate(link.href);
  });
  byId("week-pick").addEventListener("submit", (event) => {
    event.preventDefault();
    const day = parseDay(byId("week-date").value);
    if (!day) return;
    const { child } = address();
    const selected = child || (state.children && state.children[0] && state.children[0].id);
    navigate(diaryUrl(selected, mondayOf(day)));
  });
  window.addEventListener("popstate", () => show());
}

neverFromCache();
byId("legend").replaceChildren(attendanceLegend());
listen();
// The changes' stream first: a week read after it is open misses nothing written meanwhile
// (one read before it is read again once it is).
const live = startLive({
  shownChild: () => state.shown?.child,
  shownWeek: () => state.shown,
  askedBefore: (time) => state.askedAt !== undefined && state.askedAt < time,
  forget(child) {
    for (const key of [...state.averages.keys()]) {
      if (key.startsWith(`${child}/`)) state.averages.delete(key);
    }
  },
  refresh: () => show({ quiet: true }),
});
show();
