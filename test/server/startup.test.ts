/** `npm start` refuses bad settings with one clear line and an exit code, never a stack trace. */
import { describe, expect, it } from 'vitest';
import { runServerToExit } from '../support/process';

describe('server start-up', () => {
  it('exits 2 naming a missing variable', async () => {
    const r = await runServerToExit({ DIFY_API_KEY: 'app-start-test-key' });
    expect(r.code).toBe(2);
    expect(r.output).toContain('Configuration error: WECHAT_TOKEN: is required');
    expect(r.output).not.toMatch(/\n\s+at /); // no stack trace
  });

  it('exits 2 when STORE=mongodb has no MONGODB_URI, with the secrets kept out of the output', async () => {
    const r = await runServerToExit({ WECHAT_TOKEN: 'starttoken1', DIFY_API_KEY: 'app-start-test-key', STORE: 'mongodb' });
    expect(r.code).toBe(2);
    expect(r.output).toContain('MONGODB_URI: is required when STORE=mongodb');
    expect(r.output).not.toContain('app-start-test-key');
    expect(r.output).not.toContain('starttoken1');
  });
});
