// A small SVG chart of one subject's marks over a period, drawn here (no library): the
// marks with a number as points on a 2–5 scale by date, joined in order; marks that do not
// count hollow; the weighted average as a dashed line. A text alternative says the same.
import { dayValue, shortDate } from "./diary-dates.js";
import { formatNumber } from "./diary-week.js";

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 320;
const HEIGHT = 120;
const LEFT = 26;
const RIGHT = 8;
const TOP = 8;
const BOTTOM = 24;
const LOW = 2;
const HIGH = 5;

function node(tag, attributes = {}, text) {
  const item = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) item.setAttribute(name, String(value));
  if (text !== undefined) item.textContent = text;
  return item;
}

function scales(period) {
  const start = dayValue(period.startsOn);
  const span = Math.max(dayValue(period.endsOn) - start, 1);
  const x = (iso) => LEFT + ((dayValue(iso) - start) / span) * (WIDTH - LEFT - RIGHT);
  const y = (value) => {
    const clamped = Math.min(Math.max(value, LOW), HIGH);
    return TOP + ((HIGH - clamped) / (HIGH - LOW)) * (HEIGHT - TOP - BOTTOM);
  };
  return { x, y };
}

/** A line across the plot at height `y`. */
function horizontal(y, className) {
  return node("line", { x1: LEFT, x2: WIDTH - RIGHT, y1: y, y2: y, class: className });
}

function axes(svg, period, { y }) {
  for (let value = LOW; value <= HIGH; value += 1) {
    svg.append(horizontal(y(value), "grid"));
    const label = { x: LEFT - 6, y: y(value) + 4, class: "tick", "text-anchor": "end" };
    svg.append(node("text", label, String(value)));
  }
  const bottom = HEIGHT - 6;
  svg.append(node("text", { x: LEFT, y: bottom, class: "tick" }, shortDate(period.startsOn)));
  const end = { x: WIDTH - RIGHT, y: bottom, class: "tick", "text-anchor": "end" };
  svg.append(node("text", end, shortDate(period.endsOn)));
}

/** The points of the chart: marks with a number, by date. */
export function chartPoints(contributions) {
  return contributions
    .filter((item) => item.mark.numericValue !== null)
    .map((item) => ({ date: item.mark.date, value: item.mark.numericValue, item }))
    .sort((a, b) => (a.date < b.date ? -1 : a.date > b.date ? 1 : 0));
}

function description(subject, points, average) {
  const marks = points.map((point) => `${shortDate(point.date)}: ${point.item.mark.value}`);
  const tail = average === null ? "" : `; средний балл ${formatNumber(average)}`;
  return `Оценки по предмету «${subject}» за период: ${marks.join(", ")}${tail}.`;
}

/** The chart as an <svg> (role img with a description), or undefined without points. */
export function marksChart(subject, contributions, period, average) {
  const points = chartPoints(contributions);
  if (points.length === 0) return undefined;
  const scale = scales(period);
  const svg = node("svg", {
    viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
    class: "chart",
    role: "img",
    "aria-label": description(subject, points, average),
  });
  axes(svg, period, scale);
  if (average !== null) {
    svg.append(horizontal(scale.y(average), "average-line"));
  }
  const path = points.map(
    (p, i) => `${i === 0 ? "M" : "L"}${scale.x(p.date).toFixed(1)} ${scale.y(p.value).toFixed(1)}`,
  );
  if (points.length > 1) svg.append(node("path", { d: path.join(" "), class: "marks-line" }));
  for (const point of points) {
    const counted = point.item.counted;
    const dot = node("circle", {
      cx: scale.x(point.date).toFixed(1),
      cy: scale.y(point.value).toFixed(1),
      r: 4,
      class: counted ? "dot" : "dot not-counted",
    });
    const note = counted ? "" : ", не учитывается";
    dot.append(node("title", {}, `${shortDate(point.date)}: ${point.item.mark.value}${note}`));
    svg.append(dot);
  }
  return svg;
}
