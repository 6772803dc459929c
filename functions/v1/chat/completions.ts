// The OpenAI-compatible chat completions on laf: https://<appid>.laf.run/v1/chat/completions. Thin entry; the code is in lib/ (docs/api.md).
// laf routes by function name, and a name may hold slashes: this function's name is `v1/chat/completions`.
// Deploy the bundle `npm run build:laf` writes to dist/laf, not this file (see README "Deploy to laf").
import cloud from '@lafjs/cloud';
import { handleLafWebhook } from '../../../lib/adapters/laf/entry';

export default async function (ctx: FunctionContext) {
  return handleLafWebhook(ctx, cloud, '/v1/chat/completions');
}
