// The WeChat webhook on laf: https://<appid>.laf.run/wechat. Thin entry; the code is in lib/.
// Deploy the bundle `npm run build:laf` writes to dist/laf, not this file (see README "Deploy to laf / sealaf").
import cloud from '@lafjs/cloud';
import { handleLafRequest } from '../lib/adapters/laf/entry';

export default async function (ctx: FunctionContext) {
  return handleLafRequest(ctx, cloud);
}
