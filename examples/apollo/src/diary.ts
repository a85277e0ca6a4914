/**
 * The diary of the viewer's children, read with Apollo Client 4 and typed by
 * GraphQL Code Generator (`npx graphql-codegen` writes src/gql/ from codegen.ts).
 *
 * Environment: GRAPHQL_URL (default http://127.0.0.1:8000/graphql), TOKEN (a bearer
 * access token of a parent or student), FROM and TO (dates, default 2026-11-27).
 * Prints the query's data as one line of JSON to stdout and exits 0; on errors prints
 * each error's `extensions.code` and message to stderr and exits 1.
 */
import { ApolloClient, CombinedGraphQLErrors, HttpLink, InMemoryCache } from "@apollo/client";

import { graphql } from "./gql/index.js";
import type { DiaryQuery } from "./gql/graphql.js";

const DiaryDocument = graphql(`
  query Diary($from: Date!, $to: Date!) {
    myChildren {
      id
      fullName
      school {
        name
      }
      schoolClass {
        name
      }
      diary(from: $from, to: $to) {
        from
        to
        lastUpdatedAt
        days {
          date
          lessons {
            number
            startsAt
            subject {
              name
            }
            status
            replacement {
              subject {
                name
              }
            }
            topic
            homework {
              text
              dueOn
            }
            marks {
              value
              weight
              workType {
                name
              }
            }
            attendance {
              code
            }
          }
        }
      }
    }
  }
`);

// Compile-time proof of the scalar mappings: `string` exactly (not `any`, not `unknown`).
type Equals<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
type Assert<T extends true> = T;
type Diary = DiaryQuery["myChildren"][number]["diary"];
type Lesson = Diary["days"][number]["lessons"][number];
export type ScalarsAreStrings = Assert<
  Equals<
    [Diary["from"], Diary["lastUpdatedAt"], Lesson["startsAt"], Lesson["homework"][number]["dueOn"]],
    [string, string | null, string | null, string]
  >
>;

const DATE = /^\d{4}-\d{2}-\d{2}$/;
const DATE_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;
const TIME = /^\d{2}:\d{2}:\d{2}$/;

/** Checks that a scalar's value has its documented format. */
function expectFormat(kind: string, pattern: RegExp, value: string): void {
  if (!pattern.test(value)) {
    throw new Error(`${kind} value ${JSON.stringify(value)} is not in the documented format`);
  }
}

/** Checks every Date, DateTime and Time of the result against the documented formats. */
function checkScalars(data: DiaryQuery): void {
  for (const child of data.myChildren) {
    const { diary } = child;
    expectFormat("Date", DATE, diary.from);
    expectFormat("Date", DATE, diary.to);
    if (diary.lastUpdatedAt !== null && diary.lastUpdatedAt !== undefined) {
      expectFormat("DateTime", DATE_TIME, diary.lastUpdatedAt);
    }
    for (const day of diary.days) {
      expectFormat("Date", DATE, day.date);
      for (const lesson of day.lessons) {
        if (lesson.startsAt !== null && lesson.startsAt !== undefined) {
          expectFormat("Time", TIME, lesson.startsAt);
        }
        lesson.homework.forEach((homework) => expectFormat("Date", DATE, homework.dueOn));
      }
    }
  }
}

function makeClient(): ApolloClient {
  const uri = process.env.GRAPHQL_URL ?? "http://127.0.0.1:8000/graphql";
  const link = new HttpLink({ uri, headers: { Authorization: `Bearer ${process.env.TOKEN ?? ""}` } });
  // A Lesson's marks and attendance are the student's: the same lesson (one id) reads
  // differently for two children of one class, so lessons are not normalized by id.
  const cache = new InMemoryCache({ typePolicies: { Lesson: { keyFields: false } } });
  return new ApolloClient({ link, cache });
}

/** Prints the errors of a failed request to stderr, one line each. */
function reportError(error: unknown): void {
  if (CombinedGraphQLErrors.is(error)) {
    for (const graphQLError of error.errors) {
      const code = graphQLError.extensions?.["code"] ?? "NO_CODE";
      const detail = graphQLError.extensions?.["detail"];
      console.error(`${String(code)}: ${graphQLError.message}${detail === undefined ? "" : ` (${String(detail)})`}`);
    }
  } else if (error instanceof Error) {
    // Not a GraphQL response: the server was unreachable (the cause says why) or no GraphQL server answered.
    const cause = error.cause instanceof Error ? ` (${error.cause.message})` : "";
    console.error(`${error.name}: ${error.message}${cause}`);
  } else {
    console.error(String(error));
  }
}

async function main(): Promise<number> {
  const client = makeClient();
  const variables = { from: process.env.FROM ?? "2026-11-27", to: process.env.TO ?? "2026-11-27" };
  try {
    const result = await client.query({ query: DiaryDocument, variables });
    if (result.data === undefined) {
      throw new Error("the response carried no data");
    }
    checkScalars(result.data);
    // __typename is added by Apollo's cache, not asked for: left out so the output is the API's.
    console.log(JSON.stringify(result.data, (key, value: unknown) => (key === "__typename" ? undefined : value)));
    return 0;
  } catch (error: unknown) {
    reportError(error);
    return 1;
  }
}

process.exitCode = await main();
