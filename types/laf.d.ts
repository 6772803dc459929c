/**
 * laf's ambient `FunctionContext` (a global type on laf, no import), taken from the declaration in
 * @lafjs/cloud, which also types `cloud` itself: `cloud.mongo.db` is a MongoDB driver 5.9 `Db` there.
 */
import type { FunctionContext as CloudFunctionContext } from '@lafjs/cloud';

declare global {
  type FunctionContext = CloudFunctionContext;
}
