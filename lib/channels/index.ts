/**
 * Every channel kind, registered once (docs/channels.md "Add a channel"). A kind is on when its
 * variables say so (lib/config.ts); `BOTS` adds more instances of any kind.
 */
import type { ChannelKind } from '../core/channel';
import { api } from './api/channel';
import { discord } from './discord/channel';
import { ilink } from './ilink/channel';
import { line } from './line/channel';
import { wechatOa } from './wechat-oa';
import { web } from './web/channel';
import { wecomApp } from './wecom-app/channel';
import { wecomBot } from './wecom-bot/channel';
import { wecomKf } from './wecom-kf/channel';

export const CHANNEL_KINDS: readonly ChannelKind[] = [
  wechatOa as ChannelKind,
  line as ChannelKind,
  discord as ChannelKind,
  web as ChannelKind,
  api as ChannelKind,
  wecomApp as ChannelKind,
  wecomKf as ChannelKind,
  wecomBot as ChannelKind,
  ilink as ChannelKind,
];
