/**
 * An OpenAI-compatible Chat Completions simulator on loopback (docs/openai.md): checks the key
 * (when one is set) and the request, streams `chat.completion.chunk`s ending in `data: [DONE]`,
 * with reasoning as `reasoning_content` (DeepSeek, DashScope), `reasoning` (Ollama) or inline
 * `<think>` tags, replays recorded transcripts (fixtures/openai/), splits bytes at awkward offsets,
 * and fails in every documented way. Used by tests, the demo and `npm run chat`; never by the bot.
 */
import { createServer } from 'http';
import type { IncomingMessage, Server, ServerResponse } from 'http';
import { readJson, readRaw, splitAwkward } from './dify-sim';
import { parseMultipart } from '../util/multipart';
import { listenLocal } from './listen';

export interface CompletionBody {
  model?: unknown;
  messages?: { role: string; content: string | { type: string; text?: string; image_url?: { url?: string } }[] }[];
  stream?: unknown;
  [field: string]: unknown;
}

export type OpenAIScript =
  | {
      kind: 'answer';
      text: string;
      /** Thinking before the answer, sent the way `reasoningAs` says. */
      reasoning?: string;
      reasoningAs?: 'reasoning_content' | 'reasoning' | 'think-tags';
      finishReason?: 'stop' | 'length' | 'content_filter';
      durationMs?: number;
      pieceChars?: number;
      /** Omit the usage chunk (servers without include_usage support). */
      noUsage?: boolean;
      headerDelayMs?: number;
    }
  | { kind: 'transcript'; sse: string; durationMs?: number }
  | { kind: 'http'; status: number; body: string; headers?: Record<string, string>; headerDelayMs?: number }
  /** Some text, then `data: {"error": …}` after HTTP 200, and the stream ends (no [DONE]). */
  | { kind: 'stream-error'; text: string; code: string; message: string }
  /** Some text, then the stream ends without a finish reason or [DONE]. */
  | { kind: 'no-end'; text: string }
  | { kind: 'keep-alive'; count: number; everyMs: number }
  | { kind: 'hang' };

export interface OpenAICall {
  body: CompletionBody;
  authorization: string | undefined;
  at: number;
  firstFrameAt?: number;
}

export interface OpenAISimOptions {
  /** Required key; none: any (or no) key is accepted, like Ollama. */
  apiKey?: string;
  model?: string;
  /** More model ids `GET /v1/models` lists after `model` (a server that serves several). */
  otherModels?: readonly string[];
  script?: (body: CompletionBody, callIndex: number) => OpenAIScript;
  awkwardChunks?: boolean;
  port?: number;
  /** The model takes image_url parts (a vision model); otherwise they are refused with 400, as OpenAI does. */
  vision?: boolean;
  /** What `/audio/transcriptions` hears; default: 404, as a server without transcription answers. */
  transcribe?: (file: { filename: string; contentType: string; bytes: Buffer; model: string }) => string | { status: number; message: string };
}

export interface OpenAISim {
  /** The base URL, ending in /v1. */
  url: string;
  server: Server;
  calls: OpenAICall[];
  /** `/audio/transcriptions` requests. */
  transcriptions: { filename: string; contentType: string; bytes: Buffer; model: string }[];
  close(): Promise<void>;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, Math.max(0, ms)));

function pieces(text: string, size: number): string[] {
  const chars = [...text];
  const out: string[] = [];
  for (let i = 0; i < chars.length; i += size) out.push(chars.slice(i, i + size).join(''));
  return out;
}

/** The frames of one streamed completion, in OpenAI's chunk shape. */
export function completionFrames(s: Extract<OpenAIScript, { kind: 'answer' }>, model: string, id = 'chatcmpl-sim'): string[] {
  const base = { id, object: 'chat.completion.chunk', created: 1_760_000_000, model };
  const chunk = (delta: Record<string, unknown>, finish: string | null = null) => `data: ${JSON.stringify({ ...base, choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }] })}\n\n`;
  const size = s.pieceChars ?? 8;
  const out = [chunk({ role: 'assistant', content: '' })];
  const as = s.reasoningAs ?? 'reasoning_content';
  let text = s.text;
  if (s.reasoning !== undefined) {
    if (as === 'think-tags') text = `<think>${s.reasoning}</think>\n\n${s.text}`;
    else for (const p of pieces(s.reasoning, size)) out.push(chunk({ content: as === 'reasoning' ? '' : null, [as]: p }));
  }
  for (const p of pieces(text, size)) out.push(chunk({ content: p }));
  out.push(chunk({}, s.finishReason ?? 'stop'));
  if (!s.noUsage) out.push(`data: ${JSON.stringify({ ...base, choices: [], usage: { prompt_tokens: 20, completion_tokens: 30, total_tokens: 50 } })}\n\n`);
  out.push('data: [DONE]\n\n');
  return out;
}


function error(res: ServerResponse, status: number, message: string, type: string, code: string | null): void {
  const text = JSON.stringify({ error: { message, type, param: null, code } });
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

export async function startOpenAISim(opts: OpenAISimOptions = {}): Promise<OpenAISim> {
  const calls: OpenAICall[] = [];
  const transcriptions: { filename: string; contentType: string; bytes: Buffer; model: string }[] = [];
  const open = new Set<ServerResponse>();
  const awkward = opts.awkwardChunks ?? true;
  const model = opts.model ?? 'sim-model';
  const script = opts.script ?? ((body: CompletionBody) => ({ kind: 'answer', text: `你说的是：${body.messages?.at(-1)?.content ?? ''}` }) as OpenAIScript);

  async function write(res: ServerResponse, frames: string[], durationMs: number, call: OpenAICall): Promise<void> {
    const pause = frames.length > 0 ? durationMs / frames.length : 0;
    for (const f of frames) {
      if (pause > 0) await sleep(pause);
      if (res.destroyed) return;
      call.firstFrameAt ??= Date.now();
      const b = Buffer.from(f, 'utf8');
      for (const piece of awkward ? splitAwkward(b) : [b]) res.write(piece);
    }
  }

  async function completions(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const auth = req.headers.authorization;
    const body = ((await readJson(req)) ?? {}) as CompletionBody;
    const call: OpenAICall = { body, authorization: auth, at: Date.now() };
    calls.push(call);
    if (opts.apiKey !== undefined && auth !== `Bearer ${opts.apiKey}`) {
      error(res, 401, 'Incorrect API key provided.', 'invalid_request_error', 'invalid_api_key');
      return;
    }
    if (typeof body.model !== 'string' || body.model !== model) {
      error(res, 404, `The model \`${String(body.model)}\` does not exist or you do not have access to it.`, 'invalid_request_error', 'model_not_found');
      return;
    }
    const parts = (body.messages ?? []).flatMap((m) => (Array.isArray(m?.content) ? m.content : []));
    if (parts.length > 0 && (!opts.vision || parts.some((p) => p.type !== 'text' && p.type !== 'image_url'))) {
      error(res, 400, 'Invalid content type. image_url is only supported by certain models.', 'invalid_request_error', null);
      return;
    }
    if (
      !Array.isArray(body.messages) ||
      body.messages.length === 0 ||
      body.messages.some((m) => !['system', 'user', 'assistant'].includes(m.role) || (typeof m?.content !== 'string' && !(m.role === 'user' && Array.isArray(m.content))))
    ) {
      error(res, 400, 'Invalid messages.', 'invalid_request_error', null);
      return;
    }
    if (body.stream !== true) {
      error(res, 400, 'This simulator streams only.', 'invalid_request_error', null);
      return;
    }
    const s = script(body, calls.length - 1);
    if ('headerDelayMs' in s && s.headerDelayMs) await sleep(s.headerDelayMs);
    if (s.kind === 'http') {
      res.writeHead(s.status, { 'Content-Type': 'application/json', ...s.headers });
      res.end(s.body);
      return;
    }
    res.writeHead(200, { 'Content-Type': 'text/event-stream; charset=utf-8', 'Cache-Control': 'no-cache' });
    res.flushHeaders();
    switch (s.kind) {
      case 'hang':
        return;
      case 'answer':
        await write(res, completionFrames(s, model), s.durationMs ?? 0, call);
        break;
      case 'transcript':
        await write(res, s.sse.split(/(?<=\n\n)/), s.durationMs ?? 0, call);
        break;
      case 'stream-error': {
        const frames = completionFrames({ kind: 'answer', text: s.text, noUsage: true }, model).slice(0, -3);
        frames.push(`data: ${JSON.stringify({ error: { message: s.message, type: 'server_error', code: s.code } })}\n\n`);
        await write(res, frames, 0, call);
        break;
      }
      case 'no-end':
        await write(res, completionFrames({ kind: 'answer', text: s.text, noUsage: true }, model).slice(0, -2), 0, call);
        break;
      case 'keep-alive':
        for (let i = 0; i < s.count && !res.destroyed; i++) {
          await sleep(s.everyMs);
          res.write(': keep-alive\n\n');
        }
        break;
    }
    res.end();
  }

  const server = createServer((req, res) => {
    open.add(res);
    res.on('close', () => open.delete(res));
    const path = (req.url ?? '/').split('?')[0];
    if (req.method === 'POST' && path === '/v1/chat/completions') {
      void completions(req, res).catch(() => res.destroy());
      return;
    }
    if (req.method === 'POST' && path === '/v1/audio/transcriptions') {
      void (async () => {
        const raw = await readRaw(req, 30 * 1024 * 1024);
        if (opts.apiKey !== undefined && req.headers.authorization !== `Bearer ${opts.apiKey}`) return error(res, 401, 'Incorrect API key provided.', 'invalid_request_error', 'invalid_api_key');
        if (!opts.transcribe) return error(res, 404, 'Not found', 'invalid_request_error', null);
        if (!raw) return error(res, 413, 'Maximum content size limit exceeded.', 'invalid_request_error', null);
        const { fields, files } = parseMultipart(raw, String(req.headers['content-type'] ?? ''));
        const file = files['file'];
        if (!file || !fields['model']) return error(res, 400, "Missing required parameter: 'file' or 'model'.", 'invalid_request_error', null);
        transcriptions.push({ ...file, model: fields['model'] });
        const heard = opts.transcribe({ ...file, model: fields['model'] });
        if (typeof heard !== 'string') return error(res, heard.status, heard.message, 'invalid_request_error', null);
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify({ text: heard }));
      })().catch(() => res.destroy());
      return;
    }
    if (req.method === 'GET' && path === '/v1/models') {
      if (opts.apiKey !== undefined && req.headers.authorization !== `Bearer ${opts.apiKey}`) return error(res, 401, 'Incorrect API key provided.', 'invalid_request_error', 'invalid_api_key');
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ object: 'list', data: [model, ...(opts.otherModels ?? [])].map((id) => ({ id, object: 'model', created: 1_700_000_000, owned_by: 'sim' })) }));
      return;
    }
    error(res, 404, 'Not found', 'invalid_request_error', null);
  });
  const port = await listenLocal(server, opts.port ?? 0);
  return {
    url: `http://127.0.0.1:${port}/v1`,
    server,
    calls,
    transcriptions,
    async close() {
      for (const r of open) r.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
