// The family diary (parents and students): for now the viewer and the children with their
// school and class. The full diary (week, lessons, marks, averages) builds on this.
import { query } from "./api.js";
import { element, neverFromCache, setStatus, showViewer } from "./page.js";

function childCard(child) {
  const card = element("li", undefined, "child");
  card.dataset.childId = child.id;
  card.append(element("h2", child.fullName));
  const school = element("p", child.school.name);
  const klass = element("p", `Класс: ${child.schoolClass ? child.schoolClass.name : "—"}`);
  klass.className = "muted";
  card.append(school, klass);
  return card;
}

async function main() {
  neverFromCache();
  setStatus("Загрузка…");
  try {
    const data = await query("DiaryChildren");
    showViewer(data.viewer);
    const list = document.getElementById("children");
    list.replaceChildren(...data.myChildren.map(childCard));
    setStatus(data.myChildren.length === 0 ? "Дети не найдены в реестрах школ." : "");
  } catch (error) {
    setStatus(error.message, { error: true });
  }
}

main();
