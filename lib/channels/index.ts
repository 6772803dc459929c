/**
 * Every channel kind, registered once (docs/channels.md "Add a channel"). A kind is on when its
 * variables say so (lib/config.ts); `BOTS` adds more instances of any kind.
 */
import type { ChannelKind } from '../core/channel';
import { discord } from './discord/channel';
import { ilink } from './ilink/channel';
import { line } from './line/channel';
import { wechatOa } from './wechat-oa';

export const CHANNEL_KINDS: readonly ChannelKind[] = [wechatOa as ChannelKind, line as ChannelKind, discord as ChannelKind, ilink as ChannelKind];
