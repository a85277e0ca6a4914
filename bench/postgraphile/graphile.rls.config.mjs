// The `postgraphile-rls` peer: the same schema and options as graphile.config.mjs, with
// per-user authorization as PostGraphile's documentation recommends it (JWT guide,
// "You own JWT verification"): the server verifies the request's bearer JWT (HS256,
// audience "postgraphile", secret JWT_SECRET shared with bench/driver/rls.py) in the
// `grafast.context` callback and hands its claims to PostgreSQL through `pgSettings`:
// the `role` claim becomes the transaction's role, every other claim a
// `jwt.claims.<name>` setting that the row-level security policies of bench/postgraphile/rls.sql
// read with current_setting(). DATABASE_URL is the authenticator role
// (bench_postgraphile_auth: NOINHERIT, not a superuser, no BYPASSRLS), which can do
// nothing until it becomes the JWT's role.
import jsonwebtoken from "jsonwebtoken";

import basePreset from "./graphile.config.mjs";

const secret = process.env.JWT_SECRET;
if (!secret) {
  throw new Error("JWT_SECRET is required");
}
const verifyOptions = { algorithms: ["HS256"], audience: "postgraphile" };
const CLAIM_NAME = /^[a-z_][a-z0-9_]*$/i;

class AuthenticationError extends Error {
  constructor(message) {
    super(message);
    this.statusCode = 401;
  }
}

/** The verified claims of the request's `Authorization: Bearer <JWT>` header. */
function verifiedClaims(authorization) {
  const [scheme, token] = authorization.split(" ");
  if (scheme?.toLowerCase() !== "bearer" || !token) {
    throw new AuthenticationError("expected Authorization: Bearer <JWT>");
  }
  let claims;
  try {
    claims = jsonwebtoken.verify(token, secret, verifyOptions);
  } catch (error) {
    throw new AuthenticationError(`invalid JWT: ${error.message}`);
  }
  if (!claims || typeof claims !== "object" || typeof claims.role !== "string") {
    throw new AuthenticationError("the JWT has no role claim");
  }
  return claims;
}

/** pgSettings from the claims: the role, and jwt.claims.<name> for the others. */
function pgSettingsOf(claims) {
  const pgSettings = { role: claims.role };
  for (const [name, value] of Object.entries(claims)) {
    if (name !== "role" && value != null && CLAIM_NAME.test(name)) {
      pgSettings[`jwt.claims.${name}`] = String(value);
    }
  }
  return pgSettings;
}

/** @type {GraphileConfig.Preset} */
const preset = {
  extends: [basePreset],
  grafast: {
    explain: false,
    context(requestContext) {
      const authorization = requestContext.node?.req?.headers?.authorization;
      if (authorization === undefined) {
        // Anonymous: the authenticator's own privileges, i.e. none (introspection
        // queries such as {__typename} still answer; table reads are denied).
        return {};
      }
      return { pgSettings: pgSettingsOf(verifiedClaims(authorization)) };
    },
  },
};

export default preset;
