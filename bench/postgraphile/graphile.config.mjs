// PostGraphile v5 configuration for the benchmark peer, following the PostGraphile
// documentation for production: the Amber preset with simplified inflection and the
// connection-filter plugin (for date ranges), GraphiQL, watch mode and explain off,
// NODE_ENV=production (set by bench/run). It exposes schema `school` (the tables the
// read contract's views are built on) and connects as the database superuser, so it
// runs WITHOUT the row-level security / per-family authorization the gateway enforces.
import { PgSimplifyInflectionPreset } from "@graphile/simplify-inflection";
import { makePgService } from "postgraphile/adaptors/pg";
import { PostGraphileAmberPreset } from "postgraphile/presets/amber";
import { PostGraphileConnectionFilterPreset } from "postgraphile-plugin-connection-filter";

const connectionString = process.env.DATABASE_URL;
if (!connectionString) {
  throw new Error("DATABASE_URL is required");
}
// The same pool size as the gateway's (SCHOOL_GATEWAY_POOL_MAX, default 10) per process.
const poolMax = Number.parseInt(process.env.PG_POOL_MAX ?? "10", 10);

/** @type {GraphileConfig.Preset} */
const preset = {
  extends: [
    PostGraphileAmberPreset,
    PgSimplifyInflectionPreset,
    PostGraphileConnectionFilterPreset,
  ],
  pgServices: [
    makePgService({
      connectionString,
      schemas: ["school"],
      poolConfig: { max: poolMax },
      // No subscriptions: no LISTEN client.
      pubsub: false,
    }),
  ],
  grafserv: {
    graphqlPath: "/graphql",
    graphiql: false,
    watch: false,
  },
  grafast: {
    explain: false,
  },
};

export default preset;
