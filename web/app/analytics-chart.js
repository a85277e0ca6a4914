// The bar chart of the analyst's page: one row per group, its name above a bar drawn as
// an inline SVG (no library) sized in percent of the row, so it fits any width. A
// suppressed group gets an empty dashed bar saying why; the value is also text for
// screen readers (the bars themselves are decoration: the table holds the same figures).
import { element } from "./page.js";

const SVG = "http://www.w3.org/2000/svg";
const BAR_HEIGHT = 22;
// Beyond this share of the width the value is written inside the bar's end.
const INSIDE_FROM = 0.72;

function svgNode(tag, attributes, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

function barSvg(share, label, suppressed) {
  const svg = svgNode("svg", {
    class: "bar",
    width: "100%",
    height: BAR_HEIGHT,
    "aria-hidden": "true",
    focusable: "false",
  });
  if (suppressed) {
    svg.append(
      svgNode("rect", {
        class: "bar-hidden",
        x: 0.5,
        y: 1.5,
        width: "99%",
        height: BAR_HEIGHT - 3,
        rx: 2,
      }),
      svgNode("text", { class: "bar-note", x: 8, y: 16 }, label),
    );
    return svg;
  }
  const percent = `${(Math.max(share, 0.003) * 100).toFixed(2)}%`;
  const inside = share > INSIDE_FROM;
  svg.append(
    svgNode("rect", {
      class: "bar-fill",
      x: 0,
      y: 1,
      width: percent,
      height: BAR_HEIGHT - 2,
      rx: 2,
    }),
    svgNode(
      "text",
      {
        class: inside ? "bar-value inside" : "bar-value",
        x: percent,
        dx: inside ? -6 : 6,
        y: 16,
        "text-anchor": inside ? "end" : "start",
      },
      label,
    ),
  );
  return svg;
}

/**
 * Draw `rows` ({name, value, text, suppressed}) into the list `chart`; bars are scaled to
 * `max` (the value of a full-width bar).
 */
export function drawChart(chart, rows, max) {
  chart.replaceChildren(
    ...rows.map((row) => {
      const item = element("li", undefined, row.suppressed ? "bar-row suppressed" : "bar-row");
      const name = element("span", row.name, "bar-name");
      const value = element("span", `: ${row.text}`, "visually-hidden");
      const share = row.suppressed || !max ? 0 : row.value / max;
      item.append(name, value, barSvg(share, row.text, row.suppressed));
      return item;
    }),
  );
}
