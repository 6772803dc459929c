// WeCom's intelligent bot (智能机器人, API mode) on laf: https://<appid>.laf.run/wecom-bot. Thin entry; the code is
// in lib/ (docs/wecom.md). Deploy the bundle `npm run build:laf` writes to dist/laf, not this file (README "Deploy to laf").
// It calls no WeCom API (answers travel in the callbacks' replies and response_url), so no trusted IP is needed.
import cloud from '@lafjs/cloud';
import { handleLafWebhook } from '../lib/adapters/laf/entry';

export default async function (ctx: FunctionContext) {
  return handleLafWebhook(ctx, cloud, '/wecom-bot');
}
