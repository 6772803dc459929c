/**
 * The parts of laf's runtime the function files use (docs/laf.md). On laf these come
 * from the runtime; `@lafjs/cloud` itself is not installed here (it pulls in the AWS SDK).
 */
declare module '@lafjs/cloud' {
  import type { Db } from 'mongodb';
  const cloud: { mongo: { db: Db } };
  export default cloud;
}

/** laf's ambient request context (a subset; the runtime declares `[key: string]: any`). */
interface FunctionContext {
  __function_name?: string;
  method?: string;
  query?: Record<string, unknown>;
  headers?: Record<string, unknown>;
  body?: unknown;
  request?: { rawBody?: unknown };
  response?: {
    status(code: number): unknown;
    setHeader(name: string, value: string): unknown;
    destroy?(): unknown;
  };
  [key: string]: unknown;
}
