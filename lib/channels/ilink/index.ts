/** Personal WeChat through iLink (docs/ilink.md): the channel kind, and what the console and `npm run ilink` use. */
export { ilink, createIlinkChannel, isIlink, adoptLogin, pollAccountOf, ILINK } from './channel';
export type { IlinkChannel, IlinkControl } from './channel';
export { SessionStore, maskId, maskSecret } from './session';
export type { Credentials, LoginState, SessionState } from './session';
export { qrLogin } from './login';
export { createIlinkApi } from './api';
export { qrSvg, qrTerminal } from './qr';
export { ilinkSettings, ILINK_VARIABLES } from './settings';
