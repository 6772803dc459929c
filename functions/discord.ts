// The Discord webhook on laf: https://<appid>.laf.run/discord. Thin entry; the code is in lib/ (docs/channels.md).
// Deploy the bundle `npm run build:laf` writes to dist/laf, not this file (see README "Deploy to laf / sealaf").
import cloud from '@lafjs/cloud';
import { handleLafChannel } from '../lib/adapters/laf/entry';

export default async function (ctx: FunctionContext) {
  return handleLafChannel(ctx, cloud, 'discord');
}
