// The PostGraphile v5 peer of the benchmark: grafserv on node:http, one process or,
// with WORKERS=N, N processes sharing the port through node:cluster.
// Usage (bench/run does this): NODE_ENV=production DATABASE_URL=... PORT=... WORKERS=1 \
//   [GRAPHILE_CONFIG=./graphile.rls.config.mjs JWT_SECRET=...] node server.mjs
import cluster from "node:cluster";
import { createServer } from "node:http";
import process from "node:process";

import { postgraphile } from "postgraphile";
import { grafserv } from "postgraphile/grafserv/node";

// GRAPHILE_CONFIG picks the preset: graphile.config.mjs (superuser, the default) or
// graphile.rls.config.mjs (JWT + row-level security, the `postgraphile-rls` target).
const { default: preset } = await import(
  new URL(process.env.GRAPHILE_CONFIG ?? "./graphile.config.mjs", import.meta.url).href
);

const host = "127.0.0.1";
const port = Number.parseInt(process.env.PORT ?? "5678", 10);
const workers = Number.parseInt(process.env.WORKERS ?? "1", 10);

function startPrimary() {
  for (let i = 0; i < workers; i += 1) {
    cluster.fork();
  }
  let stopping = false;
  cluster.on("exit", (worker, code, signal) => {
    if (!stopping) {
      console.error(`postgraphile worker ${worker.process.pid} exited (${signal ?? code})`);
      process.exit(1);
    }
  });
  const stop = () => {
    stopping = true;
    for (const worker of Object.values(cluster.workers ?? {})) {
      worker?.process.kill("SIGTERM");
    }
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

async function startServer() {
  const pgl = postgraphile(preset);
  const serv = pgl.createServ(grafserv);
  const server = createServer();
  server.keepAliveTimeout = 65_000;
  server.on("error", (error) => {
    console.error(error);
    process.exit(1);
  });
  await serv.addTo(server);
  // Build the schema before accepting traffic.
  await pgl.getSchema();
  server.listen(port, host);
  const stop = () => {
    server.close();
    pgl.release().finally(() => process.exit(0));
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

if (workers > 1 && cluster.isPrimary) {
  startPrimary();
} else {
  startServer().catch((error) => {
    console.error(error);
    process.exit(1);
  });
}
