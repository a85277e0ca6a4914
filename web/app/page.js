// What every page shares: the viewer in the header, the status line, and no private data
// restored from the back/forward cache after sign-out.

/** Reload a page restored from the back/forward cache: the server decides again. */
export function neverFromCache() {
  window.addEventListener("pageshow", (event) => {
    if (event.persisted) location.reload();
  });
}

/** Show the viewer's name in the header. */
export function showViewer(viewer) {
  const name = document.querySelector("[data-viewer-name]");
  if (name) name.textContent = viewer.displayName;
}

/** The status line under the heading (loading, errors); `error` styles it as one. */
export function setStatus(text, { error = false } = {}) {
  const status = document.getElementById("status");
  status.textContent = text;
  status.className = error ? "error" : "status";
  status.hidden = text === "";
}

/** An element with text (never HTML: data is always text). */
export function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
}
