// GraphiQL from the vendored UMD files (web/vendor/graphiql/): nothing leaves this origin.
// Requests go to POST /graphql of this origin with the session cookie (same-origin
// credentials, JSON body: the gateway's CSRF rules); a bearer token can be added in the
// Headers tab instead.

const ENDPOINT = "/graphql";
const DEFAULT_QUERY = `# GraphiQL школьного шлюза: запросы выполняются от имени вошедшего
# пользователя (cookie сеанса) или с заголовком Authorization во вкладке Headers.
# Ctrl+Enter — выполнить запрос.

{
  viewer {
    role
    displayName
  }
}
`;

async function fetcher(params, options) {
  const response = await fetch(ENDPOINT, {
    method: "POST",
    credentials: "same-origin",
    headers: {
      "Content-Type": "application/json",
      Accept: "application/graphql-response+json, application/json",
      ...(options && options.headers ? options.headers : {}),
    },
    body: JSON.stringify(params),
  });
  return response.json();
}

const root = ReactDOM.createRoot(document.getElementById("graphiql"));
root.render(
  React.createElement(GraphiQL, {
    fetcher,
    defaultQuery: DEFAULT_QUERY,
    defaultEditorToolsVisibility: true,
    isHeadersEditorEnabled: true,
    shouldPersistHeaders: false,
  }),
);
