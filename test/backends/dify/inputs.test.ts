/**
 * Dify app features (issue: pictures, voice, limits, Dify inputs): DIFY_INPUTS filled per question
 * and checked at start against the app's required inputs (GET /parameters), citations from a
 * recorded transcript's retriever_resources, and a chatflow that pauses for human input.
 */
import { readFileSync } from 'fs';
import { describe, afterEach, expect, it } from 'vitest';
import { fillInputs, missingInputs } from '../../../lib/backends/dify/inputs';
import { DEFAULT_PARAMETERS } from '../../../lib/sim/dify-sim';
import { eventually, startHarness } from '../../support/harness';
import type { Harness } from '../../support/harness';

let h: Harness;
afterEach(async () => h?.close());

const REQUIRED = { ...DEFAULT_PARAMETERS, user_input_form: [{ 'text-input': { label: '公司', variable: 'company', required: true, default: '' } }, { select: { label: '语气', variable: 'tone', required: false, options: ['a'] } }] };

describe('DIFY_INPUTS', () => {
  it('fills placeholders in string values only, and names the required inputs a template leaves out', () => {
    const facts = { openid: 'oX', msgType: 'event', eventKey: 'K', scene: 'poster', now: '2026-12-01T08:00:00+08:00' };
    expect(fillInputs({ a: '{openid}/{msgType}/{eventKey}/{scene}', b: 3, c: '{now} {unknown}' }, facts)).toEqual({ a: 'oX/event/K/poster', b: 3, c: '2026-12-01T08:00:00+08:00 {unknown}' });
    expect(missingInputs(REQUIRED, {})).toEqual(['company (公司)']);
    expect(missingInputs(REQUIRED, { company: '' })).toEqual(['company (公司)']);
    expect(missingInputs(REQUIRED, { company: 'ACME' })).toEqual([]);
    expect(missingInputs({ nonsense: true }, {})).toEqual([]);
  });

  it('are sent with every question, placeholders filled from the message and the user’s QR scene', async () => {
    h = await startHarness({
      dify: { parameters: REQUIRED },
      env: { DIFY_INPUTS: JSON.stringify({ company: 'ACME', who: '{openid}', via: '{msgType}:{eventKey}', scene: '{scene}', at: '{now}' }), MENU_KEYS: JSON.stringify({ ASK: { ask: '今天有什么新闻' } }) },
    });
    await h.wechat.send('oInputs0001', { type: 'event', event: 'subscribe', eventKey: 'qrscene_poster' });
    await h.wechat.send('oInputs0001', '你好');
    await h.wechat.send('oInputs0001', { type: 'event', event: 'CLICK', eventKey: 'ASK' });
    const [text, click] = h.dify.calls.map((c) => c.body.inputs as Record<string, string>);
    expect(text).toMatchObject({ company: 'ACME', who: 'oInputs0001', via: 'text:', scene: 'poster' });
    expect(text?.['at']).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+08:00$/);
    expect(click).toMatchObject({ via: 'event:ASK' });
    expect(h.dify.calls[0]?.body).toMatchObject({ auto_generate_name: false });
  });

  it('a required input the template lacks is reported at start, by name, instead of Dify’s 400 at the first question', async () => {
    h = await startHarness({ dify: { parameters: REQUIRED } });
    await eventually(() => h.logs.some((l) => l.includes('"level":"error"') && l.includes('company (公司)') && l.includes('DIFY_INPUTS')));
    // Without it, a question fails as a configuration problem, and says so.
    expect((await h.wechat.send('oInputs0002', '你好')).text).toBe(h.config.texts.failConfig);
  });
});

describe('CITATIONS', () => {
  const transcript = readFileSync('fixtures/dify/f1-chatbot-docs.sse', 'utf8');

  it('=on appends the documents the answer used, from retriever_resources', async () => {
    h = await startHarness({ dify: { script: () => ({ kind: 'transcript', sse: transcript }) }, env: { CITATIONS: 'on' } });
    const r = await h.wechat.send('oCite', 'iPhone 13 Pro Max 的参数');
    expect(r.text).toMatch(/\n\n参考资料：\n1\. iPhone List$/);
  });

  it('is off by default', async () => {
    h = await startHarness({ dify: { script: () => ({ kind: 'transcript', sse: transcript }) } });
    expect((await h.wechat.send('oCite2', 'iPhone')).text).not.toContain('参考资料');
  });
});

describe('chatflow apps', () => {
  it('a chatflow that pauses for human input fails as a configuration problem, named', async () => {
    const paused =
      'data: {"event": "workflow_started", "task_id": "t1", "workflow_run_id": "w1", "conversation_id": "c1", "message_id": "m1", "data": {"id": "w1"}}\n\n' +
      'data: {"event": "message", "task_id": "t1", "conversation_id": "c1", "message_id": "m1", "answer": "请先填写"}\n\n' +
      'data: {"event": "human_input_required", "task_id": "t1", "workflow_run_id": "w1", "data": {"form_id": "f1"}}\n\n' +
      'data: {"event": "workflow_paused", "task_id": "t1", "workflow_run_id": "w1", "data": {"id": "w1"}}\n\n';
    h = await startHarness({ dify: { script: () => ({ kind: 'transcript', sse: paused }) } });
    expect((await h.wechat.send('oFlow', '开始')).text).toBe(h.config.texts.failConfig);
    const rec = (await h.app.store.snapshot()).messages.find((m) => m.user === 'oFlow' && m.kind === 'question');
    expect(rec?.failure?.code).toBe('dify_workflow_paused');
  });
});
