// The regional analyst's page: marks or attendance of the whole region grouped by one or
// two dimensions, as a bar chart and a table (regionalAnalytics through POST /graphql
// with the session cookie, one registered document per measure). The question is kept in
// the address (?metric=&by=&then=), so a reload or a bookmark asks it again.
import { query } from "./api.js";
import { DIMENSION_IDS, MEASURES, dimension, variables } from "./analytics-dimensions.js";
import { showAnswer } from "./analytics-view.js";
import { neverFromCache, setStatus, showViewer } from "./page.js";

const form = document.getElementById("question");
const UNAVAILABLE =
  "Не удалось получить данные аналитики: возможно, запросов было слишком много подряд. " +
  "Попробуйте через минуту.";
const DEFAULT = { metric: "marks", by: "municipality", then: "" };

function measureOf(metric) {
  return MEASURES[metric] || MEASURES.marks;
}

/** Fill both lists with the measure's dimensions, keeping the choices. */
function fillLists(metric, by, then) {
  const measure = measureOf(metric);
  const options = (ids) => ids.map((id) => new Option(dimension(measure, id).title, id));
  form.by.replaceChildren(...options(DIMENSION_IDS));
  form.then.replaceChildren(new Option("— не нужно", ""), ...options(DIMENSION_IDS));
  form.by.value = DIMENSION_IDS.includes(by) ? by : DEFAULT.by;
  form.then.value = DIMENSION_IDS.includes(then) && then !== form.by.value ? then : "";
}

function question() {
  const metric = form.metric.value;
  const ids = [form.by.value, form.then.value].filter(
    (id, index, all) => id && all.indexOf(id) === index,
  );
  return { metric, ids };
}

async function ask() {
  const { metric, ids } = question();
  const measure = measureOf(metric);
  const dimensions = ids.map((id) => dimension(measure, id));
  const params = new URLSearchParams({ metric, by: ids[0] || "", then: ids[1] || "" });
  history.replaceState(null, "", `${location.pathname}?${params}`);
  setStatus("Загрузка…");
  try {
    const data = await query(measure.document, variables(dimensions));
    showViewer(data.viewer);
    if (!data.regionalAnalytics) {
      // The field failed (e.g. RATE_LIMITED); api.js returns the data without its errors.
      setStatus(UNAVAILABLE, { error: true });
      return;
    }
    showAnswer(measure, dimensions, data.regionalAnalytics);
    setStatus("");
  } catch (error) {
    setStatus(error.message, { error: true });
  }
}

async function main() {
  neverFromCache();
  const params = new URLSearchParams(location.search);
  const metric = MEASURES[params.get("metric")] ? params.get("metric") : DEFAULT.metric;
  form.metric.value = metric;
  fillLists(metric, params.get("by") || DEFAULT.by, params.get("then") || DEFAULT.then);
  for (const radio of form.metric) {
    radio.addEventListener("change", () =>
      fillLists(form.metric.value, form.by.value, form.then.value),
    );
  }
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    ask();
  });
  await ask();
}

main();
