// The operator console on laf: https://<appid>.laf.run/admin. Thin entry; the code is in lib/.
// Deploy the bundle `npm run build:laf` writes to dist/laf, not this file (see README "Deploy to laf / sealaf").
import cloud from '@lafjs/cloud';
import { handleLafConsole } from '../lib/adapters/laf/entry';

export default async function (ctx: FunctionContext) {
  return handleLafConsole(ctx, cloud);
}
