// Pages that show only who is signed in for now (school IT admin, regional analyst).
import { query } from "./api.js";
import { neverFromCache, setStatus, showViewer } from "./page.js";

async function main() {
  neverFromCache();
  setStatus("Загрузка…");
  try {
    const data = await query("PageViewer");
    showViewer(data.viewer);
    setStatus("");
  } catch (error) {
    setStatus(error.message, { error: true });
  }
}

main();
