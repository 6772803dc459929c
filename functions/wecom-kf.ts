// WeChat customer service (微信客服) on laf: https://<appid>.laf.run/wecom-kf, the callback URL of the app that
// calls the customer-service API. Thin entry; the code is in lib/ (docs/wecom.md). Deploy the bundle
// `npm run build:laf` writes to dist/laf, not this file (README "Deploy to laf"). Its API calls need a trusted IP too.
import cloud from '@lafjs/cloud';
import { handleLafWebhook } from '../lib/adapters/laf/entry';

export default async function (ctx: FunctionContext) {
  return handleLafWebhook(ctx, cloud, '/wecom-kf');
}
