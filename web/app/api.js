// The pages' one way to the API: POST /graphql of this origin with the session cookie,
// exactly as any client (JSON body, same-origin credentials: the gateway's CSRF rules).
// Documents live in web/documents/<Name>.graphql, registered at build time
// (web/documents/manifest.json: SHA-256 per file). A page sends only the hash (Apollo's
// `extensions.persistedQuery`); if the gateway does not know it, the text follows with it.

const ENDPOINT = "/graphql";
const SIGN_IN = "/auth/login";

/** An error of the API or of the network, with the stable code when there is one. */
export class ApiError extends Error {
  constructor(message, code) {
    super(message);
    this.code = code;
  }
}

const documents = new Map();
let manifest; // a promise of {file name: SHA-256 hex}

async function staticText(path) {
  const response = await fetch(path, { credentials: "same-origin" });
  if (!response.ok) {
    throw new ApiError("Не удалось загрузить страницу. Обновите её.", "DOCUMENT_NOT_FOUND");
  }
  return response.text();
}

/** The SHA-256 (hex) of a registered document, or undefined (also for web/app/live.js). */
export async function documentHash(name) {
  // One read of the manifest however many requests ask at once.
  manifest ??= staticText("/static/documents/manifest.json")
    .then((text) => JSON.parse(text))
    .catch(() => ({}));
  return (await manifest)[`${name}.graphql`];
}

export async function documentText(name) {
  if (!documents.has(name)) {
    documents.set(name, await staticText(`/static/documents/${name}.graphql`));
  }
  return documents.get(name);
}

/** The sign-in page, coming back to this page afterwards. */
export function signIn() {
  const here = location.pathname + location.search;
  location.assign(`${SIGN_IN}?return_to=${encodeURIComponent(here)}`);
}

const SESSION_ENDED = new Set(["UNAUTHENTICATED", "TOKEN_EXPIRED", "SESSION_REVOKED"]);

/**
 * Run the operation `name` (web/documents/<name>.graphql) with `variables`; its data.
 * A missing or ended session goes to the sign-in page; other errors are thrown as ApiError
 * with the gateway's Russian message.
 */
export async function query(name, variables = {}) {
  const sha256Hash = await documentHash(name);
  const base = { operationName: name, variables };
  if (sha256Hash) {
    base.extensions = { persistedQuery: { version: 1, sha256Hash } };
    const first = await post(base);
    if (!needsText(first)) return answer(first);
  }
  // The text alone: a stale hash next to it would be refused as a mismatch.
  return answer(await post({ operationName: name, variables, query: await documentText(name) }));
}

/** The gateway did not know the hash (or does not take hashes): send the text too. */
function needsText({ response, result }) {
  const codes = (result.errors || []).map((error) => error.extensions?.code);
  return codes.includes("PERSISTED_QUERY_NOT_FOUND") || (response.status === 400 && !result.data);
}

async function post(body) {
  let response;
  try {
    response = await fetch(ENDPOINT, {
      method: "POST",
      credentials: "same-origin",
      headers: {
        "Content-Type": "application/json",
        Accept: "application/graphql-response+json, application/json",
      },
      body: JSON.stringify(body),
    });
  } catch {
    throw new ApiError("Нет связи с сервером. Проверьте подключение.", "NETWORK_ERROR");
  }
  let result;
  try {
    result = await response.json();
  } catch {
    throw new ApiError("Сервер ответил непонятно. Попробуйте позже.", "BAD_RESPONSE");
  }
  return { response, result };
}

function answer({ response, result }) {
  const errors = result.errors || [];
  const ended = errors.find((error) => SESSION_ENDED.has(error.extensions?.code));
  if (response.status === 401 || ended) {
    signIn();
    throw new ApiError("Сеанс завершён.", ended?.extensions?.code || "UNAUTHENTICATED");
  }
  if (errors.length > 0 && !result.data) {
    throw new ApiError(errors[0].message, errors[0].extensions?.code);
  }
  return result.data;
}
