// The web chat on laf: https://<appid>.laf.run/chat (off unless WEB_CHAT=on). Thin entry; the code is in lib/.
// Deploy the bundle `npm run build:laf` writes to dist/laf, not this file (see README "Deploy to laf").
import cloud from '@lafjs/cloud';
import { handleLafChat } from '../lib/adapters/laf/entry';

export default async function (ctx: FunctionContext) {
  return handleLafChat(ctx, cloud);
}
