import { readFileSync } from 'fs';
import { describe, expect, it } from 'vitest';
import { AnswerBuilder, createDifyDecoder } from '../../../lib/backends/dify/events';
import type { DifyEvent } from '../../../lib/backends/dify/events';
import { DifyError } from '../../../lib/errors';
import { splitAwkward } from '../../../lib/sim/dify-sim';

const fixture = (name: string) => readFileSync(new URL(`../../../fixtures/dify/${name}`, import.meta.url));

function decode(chunks: (Buffer | string)[]): { events: DifyEvent[]; builder: AnswerBuilder } {
  const events: DifyEvent[] = [];
  const builder = new AnswerBuilder();
  const d = createDifyDecoder((e) => {
    events.push(e);
    builder.apply(e);
  });
  for (const c of chunks) d.feed(c);
  d.end();
  return { events, builder };
}

/** Every way to cut the bytes: whole, byte by byte, awkward offsets, and two halves at every offset. */
function cuttings(buf: Buffer): Buffer[][] {
  const out: Buffer[][] = [[buf], [...buf].map((b) => Buffer.from([b])), splitAwkward(buf, 3), splitAwkward(buf, 11)];
  for (let i = 1; i < buf.length; i += Math.max(1, Math.floor(buf.length / 97))) out.push([buf.subarray(0, i), buf.subarray(i)]);
  return out;
}

describe('createDifyDecoder + AnswerBuilder on the recorded transcripts', () => {
  it.each([
    ['f1-chatbot-docs.sse', " I'm glad to meet you", '45701982-8118-4bc5-8e9b-64562b4555f2'],
    ['f3-basic.sse', ' I', '45701982-8118-4bc5-8e9b-64562b4555f2'],
    ['f3-agent.sse', 'Here is the image: ', 'conv123'],
    ['f3-chatflow.sse', ' I', 'conv123'],
  ])('%s gives the same answer however the bytes are cut', (name, answer, conversationId) => {
    for (const chunks of cuttings(fixture(name))) {
      const { builder } = decode(chunks);
      expect(builder.done).toMatchObject({ text: answer, conversationId });
    }
  });

  it('decodes json.dumps \\u escapes and multi-byte characters split mid-character (F4 capture)', () => {
    const buf = fixture('f4-capture-chatbot.sse');
    for (const chunks of cuttings(buf)) {
      const { builder, events } = decode(chunks);
      expect(builder.text).toBe('你好！');
      expect(events.map((e) => e.event)).toEqual(['message', 'message']); // the ping is not an event
      expect(builder.done).toBeUndefined(); // F4 has no message_end: not an answer
    }
    const raw = Buffer.from('data: {"event":"message","answer":"中文😀"}\n\ndata: {"event":"message_end","conversation_id":"c","message_id":"m"}\n\n');
    for (const chunks of cuttings(raw)) expect(decode(chunks).builder.done?.text).toBe('中文😀');
  });

  it('accepts CRLF line endings, comments and a final frame without its blank line', () => {
    const { builder } = decode([': comment\r\ndata: {"event":"message","answer":"a"}\r\n\r\nevent: ping\r\n\r\ndata: {"event":"message_end","conversation_id":"c","id":"m"}']);
    expect(builder.done).toMatchObject({ text: 'a', conversationId: 'c', messageId: 'm' });
  });

  it('keeps usage from message_end and ignores TTS, thoughts and workflow events', () => {
    const { builder } = decode([fixture('f1-chatbot-docs.sse')]);
    expect(builder.done?.usage).toMatchObject({ total_tokens: 1168, currency: 'USD' });
  });

  it('raises a named error for a frame that is not JSON', () => {
    expect(() => decode(['data: {"event": "message", "answer": oops}\n\n'])).toThrow(expect.objectContaining({ code: 'dify_bad_event' }));
  });
});

describe('AnswerBuilder semantics (docs/dify.md)', () => {
  const run = (events: DifyEvent[]) => {
    const b = new AnswerBuilder();
    for (const e of events) b.apply(e);
    return b;
  };

  it('message_replace replaces everything said so far', () => {
    expect(run([{ event: 'message', answer: 'bad words' }, { event: 'message_replace', answer: '[moderated]' }]).text).toBe('[moderated]');
  });

  it("New Agent's closing message is the complete answer, not appended", () => {
    const b = run([
      { event: 'agent_message', answer: 'Hel' },
      { event: 'agent_thought', thought: 'x' },
      { event: 'agent_message', answer: 'lo' },
      { event: 'message', answer: 'Hello' },
      { event: 'message_end', conversation_id: 'c', message_id: 'm' },
    ]);
    expect(b.done?.text).toBe('Hello');
  });

  it('an error event becomes a DifyError with its code and a failure kind', () => {
    const b = new AnswerBuilder();
    const err = (() => {
      try {
        b.apply({ event: 'error', status: 400, code: 'provider_quota_exceeded', message: 'quota' });
      } catch (e) {
        return e as DifyError;
      }
    })();
    expect(err).toBeInstanceOf(DifyError);
    expect(err).toMatchObject({ kind: 'quota', backendCode: 'provider_quota_exceeded', status: 400 });
    expect(() => new AnswerBuilder().apply({ event: 'error', status: 500, code: 'internal_server_error', message: 'x' })).toThrow(expect.objectContaining({ kind: 'busy' }));
    expect(() => new AnswerBuilder().apply({ event: 'error', status: 400, code: 'completion_request_error', message: 'x' })).toThrow(expect.objectContaining({ kind: 'failed' }));
  });
});
