// The answer page on laf: https://<appid>.laf.run/answer?t=<token>. Thin entry; the code is in lib/.
// Deploy the bundle `npm run build:laf` writes to dist/laf, not this file (see README "Deploy to laf / sealaf").
import cloud from '@lafjs/cloud';
import { handleLafAnswer } from '../lib/adapters/laf/entry';

export default async function (ctx: FunctionContext) {
  return handleLafAnswer(ctx, cloud);
}
