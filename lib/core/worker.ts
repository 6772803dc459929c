/**
 * Produces answers: one model call per question (two if its first worker died), progress and a
 * heartbeat in the store while it streams, the result saved before anyone delivers it, then handed
 * to the question's channel (lib/core/channel.ts): cut into its messages, sent by `send` channels,
 * shown while written by progressive ones. A question cleared by `/clear` or deleted by an
 * unsubscribe stops its model call at the next heartbeat. Which backend answers is the channel
 * instance's; the worker tells it facts about the question and knows nothing of any one backend.
 */
import type { Clock } from '../util/clock';
import type { CoreConfig } from './settings';
import { fill } from '../text/fill';
import type { Answer, AnswerFile, Answerer, ImageInput, QuestionFacts, Turn } from './answerer';
import type { Channel } from './channel';
import type { WordFilter } from '../text/filter';
import { InputError, MediaError, ModelError, errorLogFields } from '../errors';
import type { LiveAnswers } from './live';
import type { Logger } from '../util/log';
import { Stop } from '../util/stop';
import type { AnswerPart, Failure, MessageRecord, Settlement, Store, UserRecord } from '../store';
import { imagesIn, markdownToText } from '../text/markdown';
import { visibleAnswer } from '../text/reasoning';
import { splitByLength } from '../text/paging';

export interface WorkerDeps {
  config: CoreConfig;
  store: Store;
  /** The backend of questions whose channel is not (or no longer) configured. */
  answerer: Answerer;
  /** Which channel a question's conversation belongs to. */
  channels: { forKey(userKey: string): Channel | undefined };
  clock: Clock;
  logger: Logger;
  /** Answer pages in this process hear about progress here (lib/core/live.ts). */
  live?: LiveAnswers | undefined;
  /** BLOCKED_WORDS: answers containing one are replaced, and never shown while being written. */
  filter?: WordFilter | undefined;
  /**
   * May this file of an answer be fetched (lib/util/media.ts: http(s), a public host, or the backend's
   * own)? Throws a `MediaError` naming why not; such a file stays a link in the text.
   */
  vetMedia?: ((userKey: string, url: string) => Promise<void>) | undefined;
}

/**
 * The files that are part of an answer (docs/rich-answers.md): those the backend reported, then the
 * pictures its Markdown shows, once each, at most `max` (the rest stay links in the text).
 */
export function answerParts(files: readonly AnswerFile[], markdown: string, max: number): AnswerPart[] {
  const parts: AnswerPart[] = [];
  for (const f of files) if (!parts.some((p) => p.url === f.url)) parts.push({ url: f.url, kind: f.kind, ...(f.name ? { name: f.name } : {}), ...(f.mime ? { mime: f.mime } : {}), ...(f.size !== undefined ? { size: f.size } : {}) });
  for (const img of imagesIn(markdown)) if (!parts.some((p) => p.url === img.url)) parts.push({ url: img.url, kind: 'image', ...(img.alt ? { name: img.alt.slice(0, 80) } : {}) });
  return parts.slice(0, max);
}

/** At most this many of an answer's files are looked at (vetted); MEDIA_MAX_PER_ANSWER of them are kept. */
const MAX_PART_CANDIDATES = 20;

/** The messages of an answer whose channel is gone (its settings removed since it was asked). */
const fallbackPages = (answer: string) => splitByLength(markdownToText(answer), 2000);

/**
 * Runs a progressive channel's updates for one answer (docs/channels.md "Progressive"): at most one
 * per `everyMs`, one at a time, the newest text only; `finish` stops them and waits for the one in
 * flight, so the final send always comes last.
 */
class ProgressFeed {
  private latest: string | undefined;
  private lastAt = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private running: Promise<void> = Promise.resolve();
  private done = false;

  constructor(
    private readonly channel: Channel,
    private readonly q: MessageRecord,
    private readonly clock: Clock,
    private readonly logger: Logger,
  ) {}

  push(text: string): void {
    if (this.done) return;
    this.latest = text;
    if (this.timer) return;
    const every = this.channel.progress?.everyMs ?? 1000;
    const wait = Math.max(0, this.lastAt + every - this.clock.now());
    this.timer = setTimeout(() => {
      this.timer = undefined;
      const text = this.latest;
      this.latest = undefined;
      if (this.done || text === undefined) return;
      this.lastAt = this.clock.now();
      this.running = this.running
        .then(() => (this.done ? undefined : this.channel.progress?.update(this.q, text)))
        .catch((err) => this.logger.warn('progress update failed', { key: this.q._id, ...errorLogFields(err) }));
    }, wait);
  }

  async finish(): Promise<void> {
    this.done = true;
    clearTimeout(this.timer);
    await this.running;
  }
}

/** Does a question need its picture to make sense ("what is in this picture")? Then it is not asked without it. */
export function refersToPicture(question: string): boolean {
  return /图|照片|相片|截屏|画面|这张|这个是什么|picture|photo|image|screenshot|\bpic\b/i.test(question);
}

/** The knowledge documents an answer used, as a short list under it (CITATIONS=on). */
function sourcesList(names: readonly string[], title: string): string {
  const cut = (n: string) => (n.length > 40 ? `${n.slice(0, 40)}…` : n);
  return `${title}\n${names.slice(0, 5).map((n, i) => `${i + 1}. ${cut(n)}`).join('\n')}`;
}

/** How often the answer so far is saved for answer pages on other instances (docs/answer-page.md). */
export const PROGRESS_SAVE_MS = 500;

/**
 * The turns an OpenAI-compatible prompt carries before `q` (docs/openai.md): of its generation,
 * asked before it, oldest first; as many of the latest as fit the turn and character limits; none
 * once the user has been silent longer than the idle reset.
 */
export function historyFor(q: MessageRecord, user: UserRecord | null, limits: CoreConfig['history']): Turn[] {
  if (!user?.history || (user.generation ?? 0) !== (q.generation ?? 0)) return [];
  const earlier = user.history.filter((t) => t.askedAt < q.createdAt).sort((a, b) => a.askedAt - b.askedAt);
  const kept: Turn[] = [];
  let chars = (q.question ?? '').length;
  let after = q.createdAt;
  for (let i = earlier.length - 1; i >= 0 && kept.length < limits.maxTurns; i--) {
    const t = earlier[i] as Turn;
    // Silence longer than the idle reset ends the conversation: nothing before it counts.
    if (after - t.askedAt > limits.idleResetMs) break;
    chars += t.question.length + t.answer.length;
    if (chars > limits.maxChars) break;
    kept.unshift(t);
    after = t.askedAt;
  }
  return kept;
}

/** At most this many model calls per question: the first, and one after a takeover. */
const MAX_ATTEMPTS = 2;

function toFailure(err: unknown): Failure {
  if (err instanceof ModelError) return { kind: err.kind, code: err.code, status: err.status, backendCode: err.backendCode };
  if (err instanceof InputError) return { kind: 'input', code: err.code, status: 0, backendCode: '', note: err.note };
  return { kind: 'failed', code: 'internal', status: 0, backendCode: '' };
}

export class AnswerWorker {
  private readonly running = new Set<Promise<void>>();

  constructor(private readonly deps: WorkerDeps) {}

  /**
   * Start producing the answer in the background (the reply does not wait for it). `user`: the
   * asker's record as read just before the claim, when the caller has it (one read fewer).
   */
  start(record: MessageRecord, user?: UserRecord | null): void {
    const job = this.run(record, record.attempts ?? 1, user).catch((err) => {
      this.deps.logger.error('answer worker crashed', { key: record._id, ...errorLogFields(err) });
    });
    this.running.add(job);
    void job.finally(() => this.running.delete(job));
  }

  /** Resolves when every answer this process is producing has settled (tests, shutdown). */
  async idle(): Promise<void> {
    while (this.running.size > 0) await Promise.allSettled([...this.running]);
  }

  /**
   * A pending question whose worker stopped beating (its process died): take it over with an
   * atomic compare-and-set so only one instance does, and ask Dify again, once.
   */
  async takeOver(q: MessageRecord): Promise<boolean> {
    const { store, clock, config, logger } = this.deps;
    const now = clock.now();
    const staleBefore = now - config.delivery.staleAfterMs;
    if ((q.attempts ?? 1) >= MAX_ATTEMPTS) {
      const failed = await store.abandon(q, staleBefore, { kind: 'failed', code: 'worker_lost', status: 0, backendCode: '' }, now);
      if (failed) {
        logger.warn('answer abandoned: its worker died twice', { key: q._id });
      }
      return false;
    }
    const taken = await store.takeOver(q, staleBefore, now);
    if (!taken) return false;
    logger.warn('answer taken over: its worker stopped', { key: q._id, attempt: taken.attempts });
    this.start(taken);
    return true;
  }

  /** Take over every stale pending question (start-up and periodic recovery). */
  async sweep(): Promise<number> {
    const before = this.deps.clock.now() - this.deps.config.delivery.staleAfterMs;
    const stale = await this.deps.store.stalePending(before);
    let n = 0;
    for (const q of stale) if (await this.takeOver(q)) n++;
    // Settled, but the process that settled it died before its `send` channel sent it.
    for (const q of await this.deps.store.unsentChannelAnswers(before)) {
      this.deps.logger.info('sending an answer its settling process left unsent', { key: q._id });
      await this.settled(q);
      n++;
    }
    return n;
  }

  private async run(q: MessageRecord, attempt: number, known?: UserRecord | null): Promise<void> {
    const { store, clock, config, logger } = this.deps;
    const channel = this.deps.channels.forKey(q.user);
    const answerer = channel?.answerer ?? this.deps.answerer;
    const stop = new Stop();
    // The model's text so far, and what of it may be shown (reasoning removed), worked out lazily.
    let raw = '';
    let shownFor = '';
    let shownText = '';
    const visible = () => {
      if (raw !== shownFor) {
        shownFor = raw;
        shownText = visibleAnswer(raw, true);
      }
      return shownText;
    };
    // A blocked word in the text so far: nothing more of it is shown or saved (BLOCKED_WORDS).
    let blocked: string | undefined;
    let saved = '';
    // Once the model's answer is in, nothing may stop it any more (the settle that follows is news too).
    let answered = false;
    const beat = async () => {
      if (answered) return;
      const text = visible();
      const progress = !blocked && text !== saved ? (saved = text) : undefined;
      const mine = await store.heartbeat(q._id, attempt, clock.now(), progress).catch((err) => {
        logger.warn('heartbeat failed', { key: q._id, ...errorLogFields(err) });
        return true; // the store is unreachable: keep going, the answer may still be saved
      });
      // Cleared, deleted (unsubscribe) or taken over: nobody will read this answer.
      if (!mine && !answered) stop.stop();
    };
    const timer = setInterval(() => void beat(), Math.max(50, Math.floor(config.delivery.staleAfterMs / 3)));
    // Stopped or cleared through this process (a stop button, a client that left, `/clear`) is heard at
    // once: the model call ends now rather than at the next heartbeat (other instances: at that heartbeat).
    const offChange = store.onChange(q.user, () => void beat());
    const offStopped = store.onStopped(q._id, () => stop.stop());
    // With the answer page on, the text so far reaches the store twice a second (only once a link
    // is out: lib/store/store.ts `saveProgress`), so a page on any instance can follow it; always, for
    // a channel whose platform asks for it (Channel.savesProgress). Never past a blocked word.
    const feed = channel?.progress ? new ProgressFeed(channel, q, clock, logger) : undefined;
    const always = channel?.savesProgress === true;
    let shown = '';
    const progress =
      config.page.enabled || always
        ? setInterval(() => {
            const text = visible();
            if (blocked || text === shown) return;
            shown = text;
            void store.saveProgress(q._id, attempt, text, always).catch((err) => logger.warn('could not save progress', { key: q._id, ...errorLogFields(err) }));
          }, PROGRESS_SAVE_MS)
        : undefined;
    const live = this.deps.live;
    let published = '';
    let firstTextAt: number | undefined;
    // Each piece of the shown text is scanned once for blocked words, before anyone sees it.
    const filter = this.deps.filter && this.deps.filter.size > 0 ? this.deps.filter : undefined;
    let scanner = filter?.scanner();
    let scanned = '';
    const onText = (t: string) => {
      raw = t;
      firstTextAt ??= clock.now();
      if ((!live && !filter && !feed) || blocked) return;
      const text = visible();
      if (filter) {
        if (!text.startsWith(scanned)) {
          scanner = filter.scanner(); // the shown text was rewritten (a takeover, a replace): scan it again
          scanned = '';
        }
        blocked = scanner?.feed(text.slice(scanned.length));
        scanned = text;
        if (blocked) return;
      }
      if (text === published) return; // only thinking, or a tag held back: nothing new to show
      published = text;
      live?.publish(q._id, { text, attempt });
      feed?.push(text);
    };
    const started = clock.now();
    try {
      const user = known !== undefined ? known : await store.user(q.user);
      const generation = q.generation ?? 0;
      const keeps = answerer.keepsConversation;
      const conversationId = keeps && user && (user.generation ?? 0) === generation ? user.conversationId : undefined;
      const history = keeps ? undefined : historyFor(q, user, config.history);
      // A voice WeChat did not transcribe is transcribed here, once per question.
      let question = q.question ?? '';
      const heard = q.voice && !question ? fill(config.texts.voiceHeard, { text: (question = await this.transcribe(q, attempt, answerer, channel)) }) : '';
      const word = this.deps.filter?.find(question);
      if (word !== undefined) {
        logger.info('question refused: blocked word', { key: q._id, word });
        throw new InputError('input_blocked', 'the question contains a blocked word', config.texts.inputBlocked);
      }
      const picture = await this.picture(q, question, answerer, channel);
      const onConversationGone = conversationId
        ? async () => {
            logger.info('conversation gone at the backend; starting a new one', { key: q._id });
            await store.forgetConversation(q.user, conversationId);
          }
        : undefined;
      const answer: Answer = await answerer.chat(
        { query: question, user: q.user, facts: this.facts(q, user), conversationId, history, images: picture.images, onConversationGone },
        { onText, stop },
      );
      answered = true;
      // Thinking never counts as the answer; a cut answer says so.
      let shownAnswer = visibleAnswer(answer.text);
      const badWord = this.deps.filter?.find(shownAnswer);
      if (badWord !== undefined) {
        // Logged with the word, never the answer.
        logger.warn('answer replaced: blocked word', { key: q._id, word: badWord });
        shownAnswer = config.texts.answerBlocked;
      }
      const cut = answer.cut === 'length' ? config.texts.answerCut : answer.cut === 'content_filter' ? config.texts.answerFiltered : '';
      const sources = badWord === undefined && config.citations && answer.citations?.length ? sourcesList(answer.citations, config.texts.sourcesTitle) : '';
      const full = shownAnswer ? [heard, picture.note ?? '', shownAnswer, cut, sources].filter(Boolean).join('\n\n') : shownAnswer;
      // Files the backend made and pictures the answer shows (never those of a replaced answer).
      // Vetted before the cap, so a refused URL takes no place of a good one.
      const parts = badWord === undefined ? (await this.vetted(q, answerParts(answer.files ?? [], shownAnswer, MAX_PART_CANDIDATES))).slice(0, config.media.maxPerAnswer) : [];
      let result: Settlement;
      if (markdownToText(full) || parts.length > 0) {
        // Cut into the channel's own messages (WeChat's pages, LINE's and Discord's lengths); an answer
        // that is only pictures still has one message, naming them.
        let pages = channel ? channel.pages(full, parts) : fallbackPages(full);
        if (pages.length === 0 || pages.every((p) => !p.trim())) pages = [parts.map((p) => (p.kind === 'image' ? '[图片]' : `[${p.name ?? '文件'}]`)).join(' ')];
        result = { status: 'answered', answer: full, pages, ...(parts.length > 0 ? { parts } : {}) };
        if (answer.conversationId) result.conversationId = answer.conversationId;
        if (answer.messageId) result.messageId = answer.messageId;
        if (answer.usage) result.usage = answer.usage;
      } else {
        const code = answer.cut === 'content_filter' ? `${answerer.kind}_content_filter` : `${answerer.kind}_empty_answer`;
        result = { status: 'failed', answer: shownAnswer, failure: { kind: 'failed', code, status: 200, backendCode: answer.cut ?? '' } };
      }
      result.backend = answerer.kind;
      if (firstTextAt !== undefined) result.firstTextAt = firstTextAt;
      const done = await store.settle(q._id, attempt, result, clock.now());
      // Not saved means the question is gone (cleared, unsubscribed) or another worker owns it now.
      // A continued conversation keeps its id: nothing to write then.
      if (done && keeps && answer.conversationId && answer.conversationId !== conversationId) {
        await store.setConversation(q.user, generation, answer.conversationId, clock.now());
      }
      // The backend keeps nothing: the turn joins the user's history (answers only, never thinking).
      if (done && !keeps && result.status === 'answered') {
        const turn: Turn = { question, answer: shownAnswer, askedAt: q.createdAt };
        if (answer.usage?.total_tokens !== undefined) turn.tokens = answer.usage.total_tokens;
        await store.addTurn(q.user, generation, turn, config.history.maxTurns, clock.now());
      }
      logger.info('answer ready', {
        key: q._id,
        attempt,
        ms: clock.now() - started,
        pages: result.status === 'answered' ? result.pages.length : 0,
        tokens: answer.usage?.total_tokens,
        saved: done !== null,
      });
      await feed?.finish();
      if (done) await this.settled(done);
    } catch (err) {
      await feed?.finish();
      if (stop.stopped) {
        logger.info('answer stopped: the question was cleared or its user left', { key: q._id, attempt, ms: clock.now() - started });
        return;
      }
      const done = await store.settle(q._id, attempt, { status: 'failed', failure: toFailure(err), backend: answerer.kind }, clock.now());
      logger.warn('answer failed', { key: q._id, attempt, ms: clock.now() - started, ...errorLogFields(err) });
      if (done) await this.settled(done);
    } finally {
      clearInterval(timer);
      offChange();
      offStopped();
      if (progress) clearInterval(progress);
      // However it ended (settled, stopped, or no longer ours), pages stop waiting on this process.
      this.deps.live?.publish(q._id, { settled: true });
    }
  }

  /** The parts that may be fetched; the others are logged with why (the host only: a signed URL's query is a secret). */
  private async vetted(q: MessageRecord, parts: AnswerPart[]): Promise<AnswerPart[]> {
    const vet = this.deps.vetMedia;
    if (!vet || parts.length === 0) return parts;
    const ok = await Promise.all(
      parts.map((p) =>
        vet(q.user, p.url).then(
          () => true,
          (err: unknown) => {
            let host = '';
            try {
              host = new URL(p.url).host;
            } catch {
              // not a URL
            }
            this.deps.logger.warn('answer file refused', { key: q._id, host, ...errorLogFields(err) });
            return false;
          },
        ),
      ),
    );
    return parts.filter((_, i) => ok[i]);
  }

  /** What the backend is told about this question besides its text (Dify's DIFY_INPUTS placeholders). */
  private facts(q: MessageRecord, user: UserRecord | null): QuestionFacts {
    const offset = this.deps.config.store.statsUtcOffsetMin;
    const local = new Date(this.deps.clock.now() + offset * 60_000).toISOString().slice(0, 19);
    const sign = offset < 0 ? '-' : '+';
    const zone = `${sign}${String(Math.floor(Math.abs(offset) / 60)).padStart(2, '0')}:${String(Math.abs(offset) % 60).padStart(2, '0')}`;
    return { msgType: q.origin?.msgType ?? 'text', eventKey: q.origin?.eventKey ?? '', scene: user?.scene ?? '', now: `${local}${zone}` };
  }

  /** Download a voice and transcribe it; the transcript becomes the question. */
  private async transcribe(q: MessageRecord, attempt: number, answerer: Answerer, channel: Channel | undefined): Promise<string> {
    const { store, config, logger } = this.deps;
    const media = channel?.media;
    const voice = q.voice as { mediaId: string; format: string };
    const please = config.texts.voiceNoRecognition;
    if (!media) throw new InputError('voice_no_download', 'voice without a transcript, and the channel cannot download it (WECHAT_APPSECRET)', please);
    let audio: { bytes: Buffer; contentType: string };
    try {
      audio = await media(voice.mediaId);
    } catch (err) {
      throw new InputError(`voice_media_${err instanceof MediaError ? err.detail : 'failed'}`, 'could not download the voice', please, { cause: err });
    }
    const format = /^[a-z0-9]{2,5}$/i.test(voice.format) ? voice.format.toLowerCase() : 'amr';
    let text: string;
    try {
      text = (await answerer.transcribe({ bytes: audio.bytes, filename: `voice.${format}`, contentType: format === 'amr' ? 'audio/amr' : audio.contentType }, q.user)).trim();
    } catch (err) {
      logger.warn('voice could not be transcribed', { key: q._id, ...errorLogFields(err) });
      throw new InputError('voice_transcription_failed', 'the backend could not transcribe the voice', please, { cause: err });
    }
    if (!text) throw new InputError('voice_empty', 'the transcript is empty', please);
    await store.setQuestion(q._id, attempt, text);
    return text;
  }

  /**
   * The question's picture as the backend takes it. One it cannot use (no vision, too large,
   * expired): a question that needs it is not asked (InputError); one that makes sense alone is
   * asked without it, and the answer says so (`note`).
   */
  private async picture(q: MessageRecord, question: string, answerer: Answerer, channel: Channel | undefined): Promise<{ images?: ImageInput[]; note?: string }> {
    const { config, logger } = this.deps;
    const media = channel?.media;
    if (!q.image) return {};
    const without = (reason: string, code: string) => {
      logger.info('picture not used', { key: q._id, code });
      if (refersToPicture(question)) throw new InputError(code, 'the question is about a picture that cannot be used', fill(config.texts.imageUnusable, { reason }));
      return { note: fill(config.texts.imageIgnored, { reason }) };
    };
    const wants = await answerer.imageInput().catch(() => 'none' as const);
    if (wants === 'none') return without(config.texts.imageNoVision, 'image_no_vision');
    // The backend fetches the picture's URL itself, or is given the bytes when the channel can download them.
    if (wants === 'url' || !media) return { images: [{ url: q.image.picUrl }] };
    try {
      const f = await media(q.image.mediaId);
      if (!f.contentType.startsWith('image/')) return without(config.texts.imageExpired, 'image_not_an_image');
      return { images: [{ bytes: f.bytes, contentType: f.contentType }] };
    } catch (err) {
      const large = err instanceof MediaError && err.tooLarge;
      return without(large ? config.texts.imageTooLarge : config.texts.imageExpired, large ? 'image_too_large' : `image_media_${err instanceof MediaError ? err.detail : 'failed'}`);
    }
  }

  /** A settled answer goes to its channel (a `send` channel sends it; push mode pushes it). */
  private async settled(record: MessageRecord): Promise<void> {
    this.deps.live?.publish(record._id, { settled: true });
    const channel = this.deps.channels.forKey(record.user);
    await channel?.deliver?.(record._id).catch((err) => this.deps.logger.warn('could not deliver the answer', { key: record._id, ...errorLogFields(err) }));
  }
}
