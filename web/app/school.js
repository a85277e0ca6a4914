// The school IT admin's page: the schools they administer (viewer.schools), then for the
// chosen school and days the journal completeness table (school-journal.js) and the
// registry and sign-in problems (school-problems.js), each read by its own registered
// document through POST /graphql with the session cookie.
import { query } from "./api.js";
import { neverFromCache, setStatus, showViewer } from "./page.js";
import { formatWindow, windowDates } from "./school-format.js";
import { JournalTable } from "./school-journal.js";
import { showRegistry, showSignIns } from "./school-problems.js";

const state = { schoolId: null, today: null };
let journal;

function where() {
  const choice = document.getElementById("window").value;
  return { schoolId: state.schoolId, ...windowDates(choice, state.today) };
}

async function loadProblems(chosen) {
  const data = await query("SchoolProblems", chosen);
  const dashboard = data.schoolDashboard;
  state.today = dashboard.today;
  const name = document.getElementById("school-name");
  name.textContent = `${dashboard.school.name} · ${formatWindow(dashboard.from, dashboard.to)}`;
  showRegistry(dashboard.registry);
  showSignIns(dashboard.signIns);
}

/** Read and show everything of the chosen school and days. */
async function refresh() {
  setStatus("Загрузка…");
  try {
    const chosen = where();
    await Promise.all([journal.load(chosen), loadProblems(chosen)]);
    // Shown together, in the page's order: nothing moves once it is on the screen.
    for (const id of ["school-name", "journal", "registry", "sign-ins"]) {
      document.getElementById(id).hidden = false;
    }
    setStatus("");
  } catch (error) {
    setStatus(error.message, { error: true });
  }
}

function chooseSchools(schools) {
  const select = document.getElementById("school");
  select.replaceChildren(...schools.map((school) => new Option(school.name, school.id)));
  document.getElementById("school-field").hidden = schools.length < 2;
  select.addEventListener("change", () => {
    state.schoolId = select.value;
    refresh();
  });
  state.schoolId = schools[0].id;
}

async function main() {
  neverFromCache();
  setStatus("Загрузка…");
  try {
    const { viewer } = await query("SchoolViewer");
    showViewer(viewer);
    if (viewer.schools.length === 0) {
      setStatus("В реестре сотрудников за вами не закреплена ни одна школа.", { error: true });
      return;
    }
    chooseSchools(viewer.schools);
  } catch (error) {
    setStatus(error.message, { error: true });
    return;
  }
  journal = new JournalTable(
    document.getElementById("journal-table"),
    document.getElementById("journal-sorted"),
  );
  const choice = document.getElementById("choice");
  choice.hidden = false;
  choice.addEventListener("submit", (event) => event.preventDefault());
  document.getElementById("window").addEventListener("change", refresh);
  await refresh();
}

main();
