// Runs at every laf instance start: creates indexes and recovers answers a dead instance left pending.
import cloud from '@lafjs/cloud';
import { initLaf } from '../lib/adapters/laf/entry';

export default async function (ctx: FunctionContext) {
  return initLaf(ctx, cloud);
}
