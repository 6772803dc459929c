/**
 * Dify `chat-messages` stream decoding (docs/dify.md), pure: bytes in, typed events out,
 * and an answer builder that applies each event by its type. No I/O, no timers.
 */
import { createSseDecoder } from '../stream';
import { DifyError, classifyDifyStream } from '../../errors';

/** One decoded event: the JSON payload of a `data:` frame. */
export interface DifyEvent {
  event: string;
  [field: string]: unknown;
}

import type { AnswerFile, Usage } from '../../core/answerer';
export type { Usage } from '../../core/answerer';

/**
 * Bytes → events. Multi-byte characters split across chunks are held by a streaming UTF-8
 * decoder; frames split across chunks are held by eventsource-parser. A frame that is not JSON
 * raises a `DifyError` (the answer can't be trusted any more).
 */
export function createDifyDecoder(onEvent: (e: DifyEvent) => void): { feed(chunk: Buffer | string): void; end(): void } {
  return createSseDecoder((msg) => {
    let data: unknown;
    try {
      data = JSON.parse(msg.data);
    } catch (cause) {
      throw new DifyError('failed', 'dify_bad_event', 'Dify sent an event that is not JSON', { cause });
    }
    if (!data || typeof data !== 'object' || typeof (data as DifyEvent).event !== 'string') {
      // `event: ping` frames have no data and never reach here; anything else without a name is ignored.
      return;
    }
    onEvent(data as DifyEvent);
  });
}

export interface DifyAnswer {
  text: string;
  conversationId: string;
  messageId: string;
  usage: Usage | undefined;
  /** The knowledge documents the answer used (`metadata.retriever_resources`), by name, once each. */
  citations: string[];
  /** Files the app made for the answer (possibly relative URLs: the client resolves them against Dify's base). */
  files: AnswerFile[];
}

/** At most this many files are kept from one answer's events (a workflow may list many). */
const MAX_FILES = 20;

/** A Dify file object (`message_file` event, or an entry of a workflow's `files`), as a part of the answer. */
function fileOf(f: unknown): AnswerFile | undefined {
  if (!f || typeof f !== 'object') return undefined;
  const o = f as Record<string, unknown>;
  const url = typeof o['url'] === 'string' ? o['url'] : typeof o['remote_url'] === 'string' ? o['remote_url'] : undefined;
  if (!url) return undefined;
  const mime = typeof o['mime_type'] === 'string' ? o['mime_type'] : undefined;
  const kind = o['type'] === 'image' || mime?.startsWith('image/') ? 'image' : 'file';
  const name = typeof o['filename'] === 'string' ? o['filename'] : undefined;
  const size = typeof o['size'] === 'number' ? o['size'] : undefined;
  return { url, kind, ...(name ? { name } : {}), ...(mime ? { mime } : {}), ...(size !== undefined ? { size } : {}) };
}

/** Document names from `retriever_resources`, in their order, once each, bounded. */
function citationsOf(resources: unknown): string[] {
  if (!Array.isArray(resources)) return [];
  const names: string[] = [];
  for (const r of resources) {
    const name = r && typeof r === 'object' ? (r as { document_name?: unknown }).document_name : undefined;
    if (typeof name === 'string' && name.trim() && !names.includes(name.trim())) names.push(name.trim());
    if (names.length >= 20) break;
  }
  return names;
}

/**
 * Applies events to the answer text: `message`/`agent_message` append, `message_replace`
 * replaces (output moderation), a `message` after `agent_message`s is New Agent's complete
 * answer and replaces too; `message_end` finishes; `error` throws. Everything else is ignored.
 */
export class AnswerBuilder {
  text = '';
  done: DifyAnswer | undefined;
  private sawAgentMessage = false;
  private readonly files: AnswerFile[] = [];
  /** A chatflow: its `workflow_finished` (which may list the workflow's files) follows `message_end`. */
  inWorkflow = false;
  workflowFinished = false;

  private addFiles(list: unknown): void {
    for (const f of Array.isArray(list) ? list : [list]) {
      const file = fileOf(f);
      if (file && this.files.length < MAX_FILES && !this.files.some((x) => x.url === file.url)) this.files.push(file);
    }
  }

  apply(e: DifyEvent): void {
    const answer = typeof e['answer'] === 'string' ? e['answer'] : '';
    switch (e.event) {
      case 'message':
        this.text = this.sawAgentMessage ? answer : this.text + answer;
        break;
      case 'agent_message':
        this.sawAgentMessage = true;
        this.text += answer;
        break;
      case 'message_replace':
        this.text = answer;
        break;
      case 'message_file':
        // A file the app made (a drawing tool's picture); a user's own upload is not part of the answer.
        if (e['belongs_to'] !== 'user') this.addFiles(e);
        break;
      case 'workflow_started':
        this.inWorkflow = true;
        break;
      case 'workflow_finished': {
        this.workflowFinished = true;
        const data = e['data'] as { files?: unknown } | undefined;
        if (data?.files) this.addFiles(data.files);
        // It trails message_end: the answer built there gets the workflow's files too.
        if (this.done) this.done = { ...this.done, files: [...this.files] };
        break;
      }
      case 'message_end': {
        const metadata = e['metadata'] as { usage?: Usage; retriever_resources?: unknown } | undefined;
        if (e['files']) this.addFiles(e['files']);
        this.done = {
          text: this.text,
          conversationId: String(e['conversation_id'] ?? ''),
          messageId: String(e['message_id'] ?? e['id'] ?? ''),
          usage: metadata?.usage,
          citations: citationsOf(metadata?.retriever_resources),
          files: [...this.files],
        };
        break;
      }
      case 'workflow_paused':
        // A chatflow waiting for human input (human_input_required): the stream ends without an
        // answer, and nothing here can give that input (docs/dify.md §3).
        throw new DifyError('config', 'dify_workflow_paused', 'the chatflow paused for human input, which a WeChat chat cannot give');
      case 'error': {
        const status = typeof e['status'] === 'number' ? e['status'] : 500;
        const code = String(e['code'] ?? 'unknown');
        throw new DifyError(classifyDifyStream(status, code), 'dify_stream_error', String(e['message'] ?? 'Dify reported an error'), {
          status,
          backendCode: code,
        });
      }
      default:
        // ping, agent_thought, workflow/node events, TTS, unknown names: not answer text.
        break;
    }
  }
}
