/**
 * A Dify Service API simulator on loopback, faithful to docs/dify.md: it checks the request the
 * way Dify does (key, `inputs`, `user`, UUID conversation ids scoped to their user), streams SSE
 * in the real serialisations (orjson-compact or the older `json.dumps` with \u escapes), replays
 * recorded transcripts, splits bytes at awkward offsets (inside UTF-8 characters), and can fail
 * in every documented way. Used by tests, the demo and the benchmarks; never by the bot itself.
 */
import { randomUUID } from 'crypto';
import { createServer } from 'http';
import type { IncomingMessage, Server, ServerResponse } from 'http';
import { parseMultipart } from '../util/multipart';
import { listenLocal } from './listen';

export interface ChatBody {
  query?: unknown;
  inputs?: unknown;
  user?: unknown;
  conversation_id?: unknown;
  response_mode?: unknown;
  files?: unknown;
}

/** A file uploaded with `/files/upload` or sent to `/audio-to-text`. */
export interface SimUpload {
  id: string;
  user: string;
  filename: string;
  contentType: string;
  bytes: Buffer;
}

/** How the simulator answers one chat request. Delays are in ms. */
export type Script =
  | {
      kind: 'answer';
      text: string;
      /** App type decides the event sequence (docs/dify.md). */
      app?: 'chat' | 'agent-chat' | 'advanced-chat';
      /** `orjson` (current Dify) or `json.dumps` (older: spaces, \u escapes). */
      style?: 'orjson' | 'json.dumps';
      /** Wait before the response headers. */
      headerDelayMs?: number;
      /** Total time spread over the answer's chunks. */
      durationMs?: number;
      /** Answer text pieces (default: ~12 characters each). */
      pieceChars?: number;
      /** Replace the whole answer at the end (output moderation). */
      replaceWith?: string;
      /** Send `event: ping` every this many ms while generating. */
      pingEveryMs?: number;
      /** Files the app makes (a drawing tool): `message_file` events before the text (chat, agent-chat). */
      files?: { url: string; type?: string }[];
      /** A chatflow's file outputs, listed in `workflow_finished.data.files` (advanced-chat). */
      workflowFiles?: { url: string; type?: string; filename?: string; mime_type?: string; size?: number }[];
    }
  | { kind: 'transcript'; sse: string; headerDelayMs?: number; durationMs?: number }
  | { kind: 'http'; status: number; body: string; headerDelayMs?: number }
  /** Stream part of an answer, then break the connection. */
  | { kind: 'cut'; text: string; durationMs?: number }
  /** Stream part of an answer, then an in-stream `error` event. */
  | { kind: 'stream-error'; text: string; code: string; status: number; message: string }
  /** Stream an answer and end the stream without `message_end`. */
  | { kind: 'no-end'; text: string }
  /** A frame whose data is not JSON. */
  | { kind: 'bad-json'; text: string }
  /** Only pings, then end. */
  | { kind: 'pings'; count: number; everyMs: number }
  /** Accept and never send a byte. */
  | { kind: 'hang' };

export interface RecordedCall {
  body: ChatBody;
  authorization: string | undefined;
  at: number;
  /** When the first frame of the stream was written (benchmarks time what follows from it). */
  firstFrameAt?: number;
  /** When the bot closed the connection before the answer was complete (it stopped the model call). */
  cutAt?: number;
}

export interface DifySimOptions {
  apiKey: string;
  /** Picks the script for each call; default: a short echo answer. */
  script?: (body: ChatBody, callIndex: number) => Script;
  /** Split the response bytes at awkward offsets (default true). */
  awkwardChunks?: boolean;
  /** Port on 127.0.0.1 (default: any free port). */
  port?: number;
  /** What `GET /parameters` answers (the app's input form, file upload settings); a chat app's
   * defaults when omitted. */
  parameters?: Record<string, unknown>;
  /** What `/audio-to-text` hears in a recording; default: speech-to-text is off (400 speech_to_text_disabled). */
  transcribe?: (audio: SimUpload) => string | { status: number; code: string; message: string };
}

/** `GET /parameters` of a plain chat app with no inputs, as Dify answers it (docs/dify.md). */
export const DEFAULT_PARAMETERS: Readonly<Record<string, unknown>> = {
  opening_statement: '',
  suggested_questions: [],
  suggested_questions_after_answer: { enabled: false },
  speech_to_text: { enabled: false },
  retriever_resource: { enabled: false },
  annotation_reply: { enabled: false },
  user_input_form: [],
  file_upload: { image: { enabled: false, number_limits: 3, detail: 'high', transfer_methods: ['remote_url', 'local_file'] } },
  system_parameters: { file_size_limit: 15, image_file_size_limit: 10, audio_file_size_limit: 50, video_file_size_limit: 100 },
};

export interface DifySim {
  url: string;
  server: Server;
  calls: RecordedCall[];
  deletes: { conversationId: string; user: string }[];
  /** `POST /chat-messages/{task_id}/stop` calls. */
  stops: { taskId: string; user: string; authorization: string | undefined }[];
  /** conversation id → owning user. */
  conversations: Map<string, string>;
  /** `POST /files/upload` uploads. */
  uploads: SimUpload[];
  /** `POST /audio-to-text` recordings. */
  audio: SimUpload[];
  close(): Promise<void>;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Python's json.dumps: ", " and ": " separators, non-ASCII escaped as \uXXXX. */
export function pyJson(value: unknown): string {
  if (value === null || typeof value !== 'object') {
    return JSON.stringify(value).replace(/[\u007f-\uffff]/g, (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'));
  }
  if (Array.isArray(value)) return '[' + value.map(pyJson).join(', ') + ']';
  return '{' + Object.entries(value as Record<string, unknown>).map(([k, v]) => `${pyJson(k)}: ${pyJson(v)}`).join(', ') + '}';
}

/**
 * Cut points that land inside multi-byte UTF-8 characters and inside `data:` lines: every
 * multi-byte character is split after its first byte, plus a cut every 1–17 bytes otherwise.
 */
export function splitAwkward(buf: Buffer, seed = 7): Buffer[] {
  const out: Buffer[] = [];
  let start = 0;
  let step = seed;
  for (let i = 1; i < buf.length; i++) {
    const b = buf[i - 1] as number;
    const leadOfMultibyte = b >= 0xc0;
    step = (step * 31 + 7) % 17;
    if (leadOfMultibyte || i - start > step) {
      out.push(buf.subarray(start, i));
      start = i;
    }
  }
  out.push(buf.subarray(start));
  return out.filter((c) => c.length > 0);
}

function pieces(text: string, size: number): string[] {
  const chars = [...text];
  const out: string[] = [];
  for (let i = 0; i < chars.length; i += size) out.push(chars.slice(i, i + size).join(''));
  return out.length ? out : [''];
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, Math.max(0, ms)));

function frame(obj: Record<string, unknown>, style: 'orjson' | 'json.dumps'): string {
  return `data: ${style === 'orjson' ? JSON.stringify(obj) : pyJson(obj)}\n\n`;
}

const usage = { prompt_tokens: 12, completion_tokens: 34, total_tokens: 46, total_price: '0.0001', currency: 'USD', latency: 1.2 };

/** Frames for an answer, in the event sequence of the app type. */
export function answerFrames(text: string, ids: { conversation_id: string; message_id: string; task_id: string }, s: Extract<Script, { kind: 'answer' }>): string[] {
  const style = s.style ?? 'orjson';
  const base = { conversation_id: ids.conversation_id, message_id: ids.message_id, created_at: 1_705_395_332, task_id: ids.task_id };
  const out: string[] = [];
  const app = s.app ?? 'chat';
  if (app === 'advanced-chat') {
    out.push('event: ping\n\n');
    out.push(frame({ event: 'workflow_started', ...base, workflow_run_id: 'wfr', data: { id: 'wfr', workflow_id: 'wf', inputs: {}, created_at: 1 } }, style));
    out.push(frame({ event: 'node_started', ...base, workflow_run_id: 'wfr', data: { id: 'n1', node_id: 'llm', node_type: 'llm', title: 'LLM', index: 1 } }, style));
  }
  if (app === 'agent-chat') {
    out.push(frame({ event: 'agent_thought', ...base, id: 'th1', position: 1, thought: 'thinking…', tool: '', tool_input: '' }, style));
  }
  s.files?.forEach((f, i) => out.push(frame({ event: 'message_file', ...base, id: `file_${i + 1}`, type: f.type ?? 'image', belongs_to: 'assistant', url: f.url }, style)));
  for (const p of pieces(text, s.pieceChars ?? 12)) {
    out.push(frame({ event: app === 'agent-chat' ? 'agent_message' : 'message', ...base, id: ids.message_id, answer: p }, style));
  }
  if (s.replaceWith !== undefined) out.push(frame({ event: 'message_replace', ...base, answer: s.replaceWith }, style));
  if (app === 'advanced-chat') {
    out.push(frame({ event: 'node_finished', ...base, workflow_run_id: 'wfr', data: { id: 'n1', node_id: 'llm', status: 'succeeded' } }, style));
  }
  out.push(frame({ event: 'message_end', ...base, id: ids.message_id, metadata: { usage, retriever_resources: [] } }, style));
  if (app === 'advanced-chat') {
    out.push(frame({ event: 'workflow_finished', ...base, workflow_run_id: 'wfr', data: { id: 'wfr', status: 'succeeded', ...(s.workflowFiles ? { files: s.workflowFiles.map((f) => ({ type: 'image', transfer_method: 'tool_file', ...f })) } : {}) } }, style));
  }
  return out;
}

/** A request's JSON body (undefined when it is not JSON). */
/** A request body up to `max` bytes; null past it. */
export function readRaw(req: IncomingMessage, max: number): Promise<Buffer | null> {
  return new Promise((resolve) => {
    const parts: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size <= max) parts.push(c);
    });
    req.on('end', () => resolve(size > max ? null : Buffer.concat(parts)));
  });
}

export function readJson(req: IncomingMessage): Promise<unknown> {
  return new Promise((resolve) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => {
      try {
        resolve(JSON.parse(Buffer.concat(parts).toString('utf8')));
      } catch {
        resolve(undefined);
      }
    });
  });
}

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

export async function startDifySim(opts: DifySimOptions): Promise<DifySim> {
  const calls: RecordedCall[] = [];
  const deletes: { conversationId: string; user: string }[] = [];
  const stops: { taskId: string; user: string; authorization: string | undefined }[] = [];
  const conversations = new Map<string, string>();
  const uploads: SimUpload[] = [];
  const audio: SimUpload[] = [];
  const open = new Set<ServerResponse>();
  const awkward = opts.awkwardChunks ?? true;
  const script = opts.script ?? ((body: ChatBody) => ({ kind: 'answer', text: `你说的是：${String(body.query)}` }) as Script);

  async function write(res: ServerResponse, chunks: string[], durationMs: number, call?: RecordedCall): Promise<boolean> {
    const bytes = chunks.map((c) => Buffer.from(c, 'utf8'));
    // The pause comes before each frame, so the last frame (message_end) lands at `durationMs`.
    const pause = bytes.length > 0 ? durationMs / bytes.length : 0;
    for (const b of bytes) {
      if (pause > 0) await sleep(pause);
      if (res.destroyed) return false;
      if (call && call.firstFrameAt === undefined) call.firstFrameAt = Date.now();
      for (const piece of awkward ? splitAwkward(b) : [b]) res.write(piece);
    }
    return !res.destroyed;
  }

  async function chat(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const auth = req.headers.authorization;
    const body = ((await readJson(req)) ?? {}) as ChatBody;
    const call: RecordedCall = { body, authorization: auth, at: Date.now() };
    calls.push(call);
    res.on('close', () => {
      if (!res.writableFinished) call.cutAt = Date.now();
    });
    if (auth !== `Bearer ${opts.apiKey}`) {
      json(res, 401, { code: 'unauthorized', message: 'Access token is invalid', status: 401 });
      return;
    }
    if (!body.inputs || typeof body.inputs !== 'object') {
      json(res, 400, { code: 'invalid_param', message: 'inputs is required in input form', status: 400 });
      return;
    }
    if (typeof body.user !== 'string' || body.user === '') {
      json(res, 400, { code: 'invalid_param', message: 'Arg user must be provided.', status: 400 });
      return;
    }
    // Required inputs, as the app's form declares them (Dify answers 400 at the first question).
    for (const item of ((opts.parameters ?? DEFAULT_PARAMETERS)['user_input_form'] as Record<string, { variable: string; required?: boolean; label?: string }>[]) ?? []) {
      for (const control of Object.values(item)) {
        const v = (body.inputs as Record<string, unknown>)[control.variable];
        if (control.required && (v === undefined || v === '')) {
          json(res, 400, { code: 'invalid_param', message: `${control.label ?? control.variable} is required in input form`, status: 400 });
          return;
        }
      }
    }
    if (body.files !== undefined) {
      const imageOn = ((opts.parameters ?? DEFAULT_PARAMETERS)['file_upload'] as { image?: { enabled?: boolean } } | undefined)?.image?.enabled === true;
      const files = Array.isArray(body.files) ? (body.files as Record<string, unknown>[]) : [];
      const bad = files.find((f) => f['type'] !== 'image' || (f['transfer_method'] === 'remote_url' ? typeof f['url'] !== 'string' : f['transfer_method'] === 'local_file' ? !uploads.some((u) => u.id === f['upload_file_id'] && u.user === body.user) : true));
      if (!imageOn || bad || files.length === 0) {
        json(res, 400, { code: 'invalid_param', message: imageOn ? 'Invalid upload file' : 'File upload is not enabled for this app', status: 400 });
        return;
      }
    }
    const conv = typeof body.conversation_id === 'string' ? body.conversation_id : '';
    if (conv !== '' && !UUID.test(conv)) {
      json(res, 400, { code: 'invalid_param', message: 'conversation_id must be a valid UUID', status: 400 });
      return;
    }
    if (conv !== '' && conversations.get(conv) !== body.user) {
      json(res, 404, { status: 404, code: 'not_found', message: 'Conversation Not Exists.' });
      return;
    }
    const s = script(body, calls.length - 1);
    if ('headerDelayMs' in s && s.headerDelayMs) await sleep(s.headerDelayMs);
    if (s.kind === 'http') {
      res.writeHead(s.status, { 'Content-Type': 'application/json' });
      res.end(s.body);
      return;
    }
    const ids = { conversation_id: conv || randomUUID(), message_id: randomUUID(), task_id: randomUUID() };
    conversations.set(ids.conversation_id, body.user);
    res.writeHead(200, { 'Content-Type': 'text/event-stream; charset=utf-8', 'Cache-Control': 'no-cache' });
    res.flushHeaders();
    const plainAnswer = { kind: 'answer' as const, text: '' };
    switch (s.kind) {
      case 'hang':
        return; // the response stays open until the client gives up or the sim closes
      case 'answer': {
        const frames = answerFrames(s.text, ids, s);
        if (s.pingEveryMs) {
          // interleave pings so idle time between frames never exceeds the ping interval
          const withPings: string[] = [];
          for (const f of frames) withPings.push('event: ping\n\n', f);
          await write(res, withPings, s.durationMs ?? 0, call);
        } else {
          await write(res, frames, s.durationMs ?? 0, call);
        }
        res.end();
        return;
      }
      case 'transcript': {
        // Recorded ids are not UUIDs of this sim; rewrite them so follow-up calls stay valid.
        const recorded = new Set([...s.sse.matchAll(/"conversation_id":\s*"([^"]+)"/g)].map((m) => m[1] as string));
        let text = s.sse;
        for (const id of recorded) text = text.split(`"${id}"`).join(`"${ids.conversation_id}"`);
        const frames = text.split(/(?<=\n\n)/);
        await write(res, frames, s.durationMs ?? 0);
        res.end();
        return;
      }
      case 'cut': {
        const frames = answerFrames(s.text, ids, plainAnswer).slice(0, -1);
        await write(res, frames, s.durationMs ?? 0);
        // Half a frame, then the connection breaks.
        res.write('data: {"event": "message", "answer": "半');
        await sleep(30); // let the bytes reach the client before the connection breaks
        res.destroy();
        return;
      }
      case 'stream-error': {
        const frames = answerFrames(s.text, ids, plainAnswer).slice(0, -1);
        frames.push(frame({ event: 'error', conversation_id: ids.conversation_id, message_id: ids.message_id, created_at: 1, status: s.status, code: s.code, message: s.message }, 'orjson'));
        await write(res, frames, 0);
        res.end();
        return;
      }
      case 'no-end': {
        await write(res, answerFrames(s.text, ids, plainAnswer).slice(0, -1), 0);
        res.end();
        return;
      }
      case 'bad-json': {
        const frames = answerFrames(s.text, ids, plainAnswer);
        frames.splice(1, 0, 'data: {"event": "message", "answer": oops}\n\n');
        await write(res, frames, 0);
        res.end();
        return;
      }
      case 'pings': {
        for (let i = 0; i < s.count && !res.destroyed; i++) {
          res.write('event: ping\n\n');
          await sleep(s.everyMs);
        }
        res.end();
        return;
      }
    }
  }

  const server = createServer((req, res) => {
    open.add(res);
    res.on('close', () => open.delete(res));
    const url = new URL(req.url ?? '/', 'http://sim');
    void (async () => {
      if (req.method === 'POST' && url.pathname === '/v1/chat-messages') return chat(req, res);
      if (req.headers.authorization !== `Bearer ${opts.apiKey}`) return json(res, 401, { code: 'unauthorized', message: 'Access token is invalid', status: 401 });
      if (req.method === 'GET' && url.pathname === '/v1/parameters') return json(res, 200, opts.parameters ?? DEFAULT_PARAMETERS);
      if (req.method === 'POST' && (url.pathname === '/v1/files/upload' || url.pathname === '/v1/audio-to-text')) {
        const raw = await readRaw(req, 20 * 1024 * 1024);
        if (!raw) return json(res, 413, { code: 'file_too_large', message: 'File size exceeded.', status: 413 });
        const { fields, files } = parseMultipart(raw, String(req.headers['content-type'] ?? ''));
        const file = files['file'];
        if (!file) return json(res, 400, { code: 'no_file_uploaded', message: 'Please upload your file.', status: 400 });
        if (!fields['user']) return json(res, 400, { code: 'invalid_param', message: 'Arg user must be provided.', status: 400 });
        const up: SimUpload = { id: randomUUID(), user: fields['user'], filename: file.filename, contentType: file.contentType, bytes: file.bytes };
        if (url.pathname === '/v1/files/upload') {
          if (!file.contentType.startsWith('image/')) return json(res, 415, { code: 'unsupported_file_type', message: 'File type not allowed.', status: 415 });
          uploads.push(up);
          return json(res, 201, { id: up.id, name: file.filename, size: file.bytes.length, extension: file.filename.split('.').pop(), mime_type: file.contentType, created_by: randomUUID(), created_at: Math.floor(Date.now() / 1000) });
        }
        audio.push(up);
        if (!opts.transcribe) return json(res, 400, { code: 'speech_to_text_disabled', message: 'Speech to text is not enabled', status: 400 });
        if (file.bytes.length === 0) return json(res, 400, { code: 'no_audio_uploaded', message: 'Please upload your audio.', status: 400 });
        const heard = opts.transcribe(up);
        if (typeof heard !== 'string') return json(res, heard.status, { code: heard.code, message: heard.message, status: heard.status });
        return json(res, 200, { text: heard });
      }
      const stop = /^\/v1\/chat-messages\/([^/]+)\/stop$/.exec(url.pathname);
      if (req.method === 'POST' && stop) {
        const body = ((await readJson(req)) ?? {}) as { user?: string };
        stops.push({ taskId: decodeURIComponent(stop[1] as string), user: String(body.user), authorization: req.headers.authorization });
        return json(res, 200, { result: 'success' });
      }
      const del = /^\/v1\/conversations\/([^/]+)$/.exec(url.pathname);
      if (req.method === 'DELETE' && del) {
        const body = ((await readJson(req)) ?? {}) as { user?: string };
        const id = decodeURIComponent(del[1] as string);
        deletes.push({ conversationId: id, user: String(body.user) });
        if (conversations.get(id) !== body.user) return json(res, 404, { status: 404, code: 'not_found', message: 'Conversation Not Exists.' });
        conversations.delete(id);
        res.writeHead(204);
        res.end();
        return;
      }
      json(res, 404, { status: 404, code: 'not_found', message: 'The requested URL was not found on the server.' });
    })().catch(() => res.destroy());
  });
  const port = await listenLocal(server, opts.port ?? 0);
  return {
    url: `http://127.0.0.1:${port}/v1`,
    server,
    calls,
    deletes,
    stops,
    uploads,
    audio,
    conversations,
    async close() {
      for (const res of open) res.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
