import type { CodegenConfig } from "@graphql-codegen/cli";

const config: CodegenConfig = {
  schema: "../../schema.graphql",
  documents: ["src/**/*.ts", "!src/gql/**"],
  generates: {
    "src/gql/": {
      preset: "client",
      presetConfig: { fragmentMasking: false },
      config: {
        // Every custom scalar must be mapped: a new one fails the generation.
        strictScalars: true,
        scalars: {
          Date: "string", // "2026-11-27": YYYY-MM-DD (RFC 3339 full-date)
          DateTime: "string", // "2026-11-27T14:23:00+00:00": RFC 3339, UTC offset, fractions optional
          Time: "string", // "08:30:00": HH:MM:SS, the school's local time
          ChangeCursor: "string", // opaque: pass it back as `since`
        },
        useTypeImports: true,
        importExtension: ".js", // relative imports that Node's ESM resolution (NodeNext) accepts
      },
    },
  },
};

export default config;
