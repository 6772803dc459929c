/**
 * Dify `chat-messages` stream decoding (docs/dify.md), pure: bytes in, typed events out,
 * and an answer builder that applies each event by its type. No I/O, no timers.
 */
import { createSseDecoder } from '../sse';
import { DifyError, classifyDifyStream } from '../errors';

/** One decoded event: the JSON payload of a `data:` frame. */
export interface DifyEvent {
  event: string;
  [field: string]: unknown;
}

import type { Usage } from '../answerer';
export type { Usage } from '../answerer';

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
        const metadata = e['metadata'] as { usage?: Usage } | undefined;
        this.done = {
          text: this.text,
          conversationId: String(e['conversation_id'] ?? ''),
          messageId: String(e['message_id'] ?? e['id'] ?? ''),
          usage: metadata?.usage,
        };
        break;
      }
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
