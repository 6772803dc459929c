// The WeCom self-built app's callback on laf: https://<appid>.laf.run/wecom. Thin entry; the code is in lib/ (docs/wecom.md).
// Deploy the bundle `npm run build:laf` writes to dist/laf, not this file (see README "Deploy to laf").
// WeCom accepts API calls only from the app's trusted IPs: laf's egress needs a fixed-IP proxy (README "WeCom").
import cloud from '@lafjs/cloud';
import { handleLafWebhook } from '../lib/adapters/laf/entry';

export default async function (ctx: FunctionContext) {
  return handleLafWebhook(ctx, cloud, '/wecom');
}
