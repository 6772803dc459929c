/**
 * `npm run menu -- show|publish|delete`: the account's custom menu through WeChat's menu API.
 * `publish` sends `MENU` (WeChat's menu format, checked first: CLICK keys must be in MENU_KEYS);
 * `show` prints the menu users see now; `delete` removes it. Needs WECHAT_APPID and
 * WECHAT_APPSECRET (and, behind an IP whitelist, WECHAT_API_BASE). Errors print WeChat's code and
 * what it means; the access token and secret are never printed.
 */
import { loadMenuSettings } from '../lib/channels/wechat-oa/settings';
import { ConfigError, WechatApiError } from '../lib/errors';
import { WECHAT_ERRORS, createWechatApi } from '../lib/channels/wechat-oa/api';

const USAGE = 'usage: npm run menu -- show | publish | delete';

async function main(): Promise<number> {
  const op = process.argv[2];
  if (op !== 'show' && op !== 'publish' && op !== 'delete') {
    console.error(USAGE);
    return 2;
  }
  let settings;
  try {
    settings = loadMenuSettings(process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(`Configuration error: ${err.message}`);
      return 2;
    }
    throw err;
  }
  if (op === 'publish' && !settings.menu) {
    console.error('Configuration error: MENU is not set: put the menu to publish there, in WeChat\'s format ({"button": [...]}); see README "Menus".');
    return 2;
  }
  const api = createWechatApi({ baseUrl: settings.apiBase, appId: settings.appId, appSecret: settings.appSecret });
  try {
    // stable_token: the same token other callers (the bot's push) already hold, none invalidated.
    const { token } = await api.stableToken();
    if (op === 'show') {
      const { open, menu } = await api.currentMenu(token);
      console.log(open && menu ? JSON.stringify(menu, null, 2) : 'No custom menu is on.');
    } else if (op === 'publish' && settings.menu) {
      await api.createMenu(token, settings.menu);
      console.log(`Published ${settings.menu.button.length} buttons. WeChat clients pick it up within about 5 minutes (re-follow the account to see it at once).`);
    } else {
      await api.deleteMenu(token);
      console.log('The custom menu is deleted.');
    }
    return 0;
  } catch (err) {
    if (err instanceof WechatApiError) {
      const meaning = WECHAT_ERRORS[err.errcode];
      console.error(`WeChat refused: ${err.errcode}${meaning ? ` (${meaning})` : ''}: ${err.message}`);
      return 1;
    }
    throw err;
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err instanceof Error ? err.message : String(err));
    process.exit(1);
  },
);
