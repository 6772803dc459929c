/** `npm start` refuses bad settings with one clear line and an exit code, never a stack trace. */
import { mkdtempSync, readFileSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { createServer } from 'net';
import type { AddressInfo } from 'net';
import { join } from 'path';
import { describe, expect, it } from 'vitest';
import { eventually } from '../../support/harness';
import { runServerToExit, spawnServer } from '../../support/process';

describe('server start-up', () => {
  it('exits 2 naming a missing variable', async () => {
    const r = await runServerToExit({ DIFY_API_KEY: 'app-start-test-key' });
    expect(r.code).toBe(2);
    expect(r.output).toContain('Configuration error: WECHAT_TOKEN: is required');
    expect(r.output).not.toMatch(/\n\s+at /); // no stack trace
  });

  it('exits 1 with one line naming the port when it is taken, never a stack trace', async () => {
    const taken = createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', () => r()));
    const port = (taken.address() as AddressInfo).port;
    const dataDir = mkdtempSync(join(tmpdir(), 'wdb-port-'));
    try {
      const r = await runServerToExit({ WECHAT_TOKEN: 'starttoken1', DIFY_API_KEY: 'app-start-test-key', DATA_DIR: dataDir, PORT: String(port) });
      expect(r.code).toBe(1);
      expect(r.output).toContain('"msg":"cannot listen"');
      expect(r.output).toContain(`"port":${port}`);
      expect(r.output).toContain('EADDRINUSE');
      expect(r.output).not.toMatch(/\n\s+at /);
    } finally {
      taken.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('accepts through 1 + 4 descriptors, and leaves no helper process behind', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'wdb-accept-'));
    const server = await spawnServer({ WECHAT_TOKEN: 'starttoken1', DIFY_API_KEY: 'app-start-test-key', DATA_DIR: dataDir });
    try {
      expect(server.output.join('')).toContain('"acceptDescriptors":5');
      const pid = server.child.pid as number;
      const children = () => readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim();
      await eventually(() => children() === '');
      const health = await fetch(server.url.replace('/wechat', '/healthz'));
      expect(health.status).toBe(200);
    } finally {
      await server.stop();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('exits 2 when STORE=mongodb has no MONGODB_URI, with the secrets kept out of the output', async () => {
    const r = await runServerToExit({ WECHAT_TOKEN: 'starttoken1', DIFY_API_KEY: 'app-start-test-key', STORE: 'mongodb' });
    expect(r.code).toBe(2);
    expect(r.output).toContain('MONGODB_URI: is required when STORE=mongodb');
    expect(r.output).not.toContain('app-start-test-key');
    expect(r.output).not.toContain('starttoken1');
  });

  it('a second server on the same DATA_DIR exits 1 naming the directory and the first one’s pid; after a kill -9 a restart works', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'wdb-two-'));
    const env = { WECHAT_TOKEN: 'starttoken1', DIFY_API_KEY: 'app-start-test-key', DATA_DIR: dataDir };
    const first = await spawnServer(env);
    try {
      const second = await runServerToExit(env);
      expect(second.code).toBe(1);
      expect(second.output).toContain(`the embedded store in ${dataDir} is in use (process ${first.child.pid} holds it)`);
      expect(second.output).not.toMatch(/\n\s+at /);
      await first.kill9();
      const third = await spawnServer(env);
      expect(third.output.join('')).toContain('took over the embedded store from a process that is gone');
      const health = (await (await fetch(third.url.replace('/wechat', '/healthz'))).json()) as { store: string };
      expect(health.store).toBe('embedded');
      await third.stop();
    } finally {
      await first.stop();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
