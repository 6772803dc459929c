/**
 * An answer's pictures (docs/rich-answers.md) as WeCom takes them (docs/wecom.md "Pictures"): JPG or
 * PNG of at most 10 MB, whether uploaded as temporary media (the self-built app, customer service) or
 * carried in the bot's final reply. What each channel did with a picture is noted on the answer's part
 * (`Store.notePart`, the console's record view); a picture that cannot go is named in the text already.
 */
import { MediaError, WechatApiError } from '../../errors';
import type { AnswerPart, MessageRecord, Store } from '../../store';
import { statKey } from '../../store';
import type { Clock } from '../../util/clock';
import type { FetchedMedia } from '../../util/media';
import type { WecomClient } from './wecom';

/** media/upload's image limit, and the bot's for each msg_item image. */
export const WECOM_IMAGE_MAX_BYTES = 10 * 1024 * 1024;
/** WeCom keeps temporary media 3 days; a copy is reused for a little less. */
export const TEMP_MEDIA_MS = 3 * 86_400_000 - 3_600_000;

export type FetchPart = (userKey: string, url: string) => Promise<FetchedMedia>;

/** The image parts of a settled answer, with their index (files are not WeCom pictures). */
export function pictureParts(q: MessageRecord): { index: number; part: AnswerPart }[] {
  if (q.status !== 'answered') return [];
  return (q.parts ?? []).flatMap((part, index) => (part.kind === 'image' ? [{ index, part }] : []));
}

/** A fetched file as a picture WeCom takes; `MediaError` (`not_jpg_png`, `too_large`) when it is not one. */
export function asWecomPicture(f: FetchedMedia): FetchedMedia {
  if (f.kind !== 'image' || (f.contentType !== 'image/png' && f.contentType !== 'image/jpeg')) {
    throw new MediaError('not_jpg_png', `WeCom takes JPG and PNG pictures, not ${f.contentType}`);
  }
  if (f.bytes.length > WECOM_IMAGE_MAX_BYTES) throw new MediaError('too_large', `over WeCom's ${WECOM_IMAGE_MAX_BYTES} bytes`, { tooLarge: true });
  return f;
}

/** Why a picture did not go, short, for the part's note (never a URL: a signed one's query is a secret). */
export function pictureFailure(err: unknown): string {
  if (err instanceof WechatApiError) return `WeCom ${err.errcode}`;
  if (err instanceof MediaError) return err.detail;
  return 'failed';
}

/**
 * The media_id of part `index` of `q` for `channel`: the one WeCom still keeps (`Store.cachePart`),
 * else the picture fetched (as if hostile), checked and uploaded with `client`'s token, and kept.
 */
export async function uploadedPicture(d: { store: Store; clock: Clock; client: WecomClient; fetchPart: FetchPart; channel: string }, q: MessageRecord, index: number): Promise<string> {
  const part = q.parts?.[index];
  if (!part) throw new MediaError('gone', 'the answer has no such part');
  const cached = part.cached?.[statKey(d.channel)];
  if (cached && cached.until > d.clock.now()) return cached.id;
  const f = asWecomPicture(await d.fetchPart(q.user, part.url));
  const id = await d.client.upload('image', { bytes: f.bytes, contentType: f.contentType, filename: `answer-${index + 1}.${f.contentType === 'image/png' ? 'png' : 'jpg'}` });
  await d.store.cachePart(q._id, index, d.channel, id, d.clock.now() + TEMP_MEDIA_MS);
  return id;
}

/** None of the answer's pictures will go this way (its text did not all arrive, or the path takes none): each part says why, once. */
export async function notePicturesUnsent(store: Store, q: MessageRecord, channel: string, reason: string): Promise<void> {
  for (const { index } of pictureParts(q)) {
    if (await store.claimPart(q._id, index, channel)) await store.notePart(q._id, index, channel, `named in text (${reason})`);
  }
}
