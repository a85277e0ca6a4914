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
          Date: "string", // "2026-11-27" (ISO 8601 calendar date)
          DateTime: "string", // "2026-11-27T08:30:00+03:00" (ISO 8601 / RFC 3339, with offset)
          Time: "string", // "08:30:00" (ISO 8601 time of day, school's local time)
          ChangeCursor: "string", // opaque: pass it back as `since`
        },
        useTypeImports: true,
        importExtension: ".js", // relative imports that Node's ESM resolution (NodeNext) accepts
      },
    },
  },
};

export default config;
