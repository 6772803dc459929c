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

import type { Usage } from '../../core/answerer';
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
      case 'message_end': {
        const metadata = e['metadata'] as { usage?: Usage; retriever_resources?: unknown } | undefined;
        this.done = {
          text: this.text,
          conversationId: String(e['conversation_id'] ?? ''),
          messageId: String(e['message_id'] ?? e['id'] ?? ''),
          usage: metadata?.usage,
          citations: citationsOf(metadata?.retriever_resources),
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
