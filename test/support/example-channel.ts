/**
 * The example channel of docs/channels.md ("Add a channel in an afternoon"): a chat platform that
 * pushes nothing to a URL, so the bot long-polls it, and that takes answers with one plain POST. The
 * whole channel is `exampleChat` below; `startExampleChat` is the platform, for tests.
 *
 * The platform: `GET /updates?after=<cursor>&wait=<ms>` holds until a message newer than the cursor
 * exists (or `wait` passes) and answers `{"messages": [{"id", "from", "text", "at"}], "cursor"}`;
 * `POST /send {"to", "text"}` delivers a message to a person.
 */
import { createServer } from 'http';
import type { AddressInfo } from 'net';
import type { Channel, ChannelDeps, ChannelKind } from '../../lib/core/channel';
import { SEND_ATTEMPTS, answerMessages } from '../../lib/core/channel';
import { conversationKey, parseKey } from '../../lib/core/keys';
import type { Env } from '../../lib/core/env';
import { errorLogFields } from '../../lib/errors';
import { markdownToText } from '../../lib/text/markdown';
import { call, jsonOf } from '../../lib/util/http';

// ---- the channel

/** 1. The variables it reads (the README's table lists each one of a real channel). */
export const EXAMPLE_VARIABLES = ['EXAMPLE_CHAT_URL'] as const;

interface ExampleSettings {
  url: string;
}

interface ExampleMessage {
  id: string;
  from: string;
  text: string;
  at: number;
}

/** How long the platform holds one poll. */
const HOLD_MS = 2000;

export const exampleChat: ChannelKind<ExampleSettings> = {
  kind: 'example',
  variables: EXAMPLE_VARIABLES,
  /** 2. Its settings: on when EXAMPLE_CHAT_URL is set, checked here. */
  settings(whole: Env) {
    const env = whole.only(EXAMPLE_VARIABLES);
    return env.has('EXAMPLE_CHAT_URL') ? { url: env.url('EXAMPLE_CHAT_URL', '') } : undefined;
  },
  secrets: () => [],
  /** 3. An instance: inbound by poller, answers sent once each. */
  create(settings: ExampleSettings, deps: ChannelDeps): Channel {
    const { bot, store, clock, logger, config } = deps;
    const channel: Channel = {
      kind: 'example',
      instance: deps.instance,
      name: deps.name,
      answerer: deps.answerer,
      delivery: 'send',
      poller: {
        account: `example:${settings.url}`,
        holdMs: HOLD_MS,
        async poll(cursor, stop) {
          const url = `${settings.url}/updates?after=${encodeURIComponent(cursor ?? '0')}&wait=${HOLD_MS}`;
          const res = await new Promise<Awaited<ReturnType<typeof call>>>((resolve, reject) => {
            stop.onStop(() => reject(new Error('stopped')));
            call({ url, timeoutMs: HOLD_MS + 5000 }).then(resolve, reject);
          });
          const body = jsonOf(res.body) as { messages?: ExampleMessage[]; cursor?: string } | undefined;
          if (res.status !== 200 || !body || typeof body.cursor !== 'string' || !Array.isArray(body.messages)) throw new Error(`the platform answered ${res.status}`);
          return { messages: body.messages, cursor: body.cursor };
        },
        // The core claims the message: seen again after a crash, it is answered once.
        async handle(m: ExampleMessage) {
          const user = conversationKey('example', deps.instance, [m.from]);
          await bot.receive({ channel, user, key: `${user}:${m.id}`, sentAt: Math.floor(m.at / 1000), arrival: clock.now(), content: { type: 'text', text: m.text } });
        },
      },
      pages: (answer) => [markdownToText(answer)],
      async deliver(key) {
        const q = await store.message(key);
        if (!q || (q.status !== 'answered' && q.status !== 'failed')) return;
        // Exactly one taker, however many instances and recoveries race.
        const took = await store.takeAll(q, 'example', 'example', clock.now());
        if (!took) return;
        const to = parseKey(q.user).parts[0] ?? '';
        try {
          for (const text of answerMessages(took, config.texts)) {
            const res = await call({ method: 'POST', url: `${settings.url}/send`, body: { to, text }, timeoutMs: 5000 });
            if (res.status !== 200) throw new Error(`send answered ${res.status}`);
          }
        } catch (err) {
          logger.warn('example: answer not sent', { key, ...errorLogFields(err) });
          await store.returnAll(took, 'example', deps.name, SEND_ATTEMPTS);
        }
      },
      carries: { images: false, files: false },
      help: config.texts.channelHelp,
    };
    return channel;
  },
};

// ---- the platform

export interface ExampleChat {
  url: string;
  /** A person writes to the bot; the message's id. */
  say(from: string, text: string): string;
  /** What the bot sent, in order. */
  sent: { to: string; text: string }[];
  /** Polls answered so far, with the cursor each asked from. */
  polls: string[];
  close(): Promise<void>;
}

export async function startExampleChat(): Promise<ExampleChat> {
  const messages: ExampleMessage[] = [];
  const sent: { to: string; text: string }[] = [];
  const polls: string[] = [];
  const waiting = new Set<() => void>();
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (req.method === 'GET' && url.pathname === '/updates') {
      const after = Number(url.searchParams.get('after') ?? '0') || 0;
      const wait = Math.min(Number(url.searchParams.get('wait') ?? '0') || 0, 30_000);
      const answer = () => {
        waiting.delete(answer);
        clearTimeout(timer);
        if (res.writableEnded) return;
        const batch = messages.slice(after);
        polls.push(String(after));
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify({ messages: batch, cursor: String(after + batch.length) }));
      };
      const timer = setTimeout(answer, wait);
      if (messages.length > after) answer();
      else waiting.add(answer);
      res.on('close', () => {
        waiting.delete(answer);
        clearTimeout(timer);
      });
      return;
    }
    if (req.method === 'POST' && url.pathname === '/send') {
      const parts: Buffer[] = [];
      req.on('data', (c: Buffer) => parts.push(c));
      req.on('end', () => {
        sent.push(JSON.parse(Buffer.concat(parts).toString('utf8')) as { to: string; text: string });
        res.writeHead(200).end('{}');
      });
      return;
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    say(from, text) {
      const id = `m${messages.length + 1}`;
      messages.push({ id, from, text, at: Date.now() });
      for (const w of [...waiting]) w();
      return id;
    },
    sent,
    polls,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
