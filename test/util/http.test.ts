/**
 * lib/util/http.ts against real servers on loopback: bounded bodies, timeouts, cancel, no redirects,
 * and the proxy from the environment (a forward proxy for http, a CONNECT tunnel with TLS for
 * https, checked in a child process that trusts the test certificate).
 */
import { spawn } from 'child_process';
import { readFileSync } from 'fs';
import { createServer, request as httpRequest } from 'http';
import type { IncomingMessage, Server, ServerResponse } from 'http';
import { createServer as createHttpsServer } from 'https';
import { connect as netConnect } from 'net';
import type { AddressInfo, Socket } from 'net';
import { fileURLToPath } from 'url';
import { afterEach, describe, expect, it } from 'vitest';
import { NetworkError, call, open } from '../../lib/util/http';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const TLS_DIR = fileURLToPath(new URL('../support/tls-test-only/', import.meta.url));
const servers: Server[] = [];
/** Tunnelled sockets: a server's close does not reach them. */
const tunnels: Socket[] = [];
afterEach(async () => {
  for (const t of tunnels.splice(0)) t.destroy();
  for (const s of servers.splice(0)) {
    s.closeAllConnections?.();
    await new Promise((r) => s.close(r));
  }
});

async function serve(handler: (req: IncomingMessage, res: ServerResponse) => void, server: Server = createServer()): Promise<{ url: string; port: number; server: Server }> {
  server.on('request', handler);
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return { url: `http://127.0.0.1:${port}`, port, server };
}

/** A proxy: forwards absolute-URL requests (plain HTTP) and tunnels CONNECT to 127.0.0.1, whatever the host. */
async function proxy(opts: { auth?: string } = {}) {
  const seen: { method: string; target: string; auth: string | undefined }[] = [];
  const refuse = (auth: string | undefined) => opts.auth !== undefined && auth !== `Basic ${Buffer.from(opts.auth).toString('base64')}`;
  const p = await serve((req, res) => {
    const auth = req.headers['proxy-authorization'];
    seen.push({ method: req.method ?? '', target: req.url ?? '', auth });
    if (refuse(auth)) return void res.writeHead(407).end();
    const target = new URL(req.url ?? '');
    const up = httpRequest({ host: '127.0.0.1', port: target.port, path: target.pathname + target.search, method: req.method, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers);
      r.pipe(res);
    });
    req.pipe(up);
  });
  p.server.on('connect', (req: IncomingMessage, client: Socket, head: Buffer) => {
    const auth = req.headers['proxy-authorization'];
    seen.push({ method: 'CONNECT', target: req.url ?? '', auth });
    if (refuse(auth)) return void client.end('HTTP/1.1 407 Proxy Authentication Required\r\n\r\n');
    tunnels.push(client);
    const up = netConnect(Number((req.url ?? '').split(':').pop()), '127.0.0.1', () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      up.write(head);
      up.pipe(client);
      client.pipe(up);
    });
    tunnels.push(up);
    up.on('error', () => client.destroy());
    client.on('error', () => up.destroy());
  });
  return { ...p, seen };
}

/** Set the proxy variables for one test, restored after. */
function withEnv(vars: Record<string, string>): void {
  const names = ['HTTP_PROXY', 'HTTPS_PROXY', 'ALL_PROXY', 'NO_PROXY', 'http_proxy', 'https_proxy', 'all_proxy', 'no_proxy'];
  const before = Object.fromEntries(names.map((n) => [n, process.env[n]]));
  for (const n of names) delete process.env[n];
  Object.assign(process.env, vars);
  afterEach(() => {
    for (const n of names) {
      if (before[n] === undefined) delete process.env[n];
      else process.env[n] = before[n];
    }
  });
}

describe('call', () => {
  it('sends JSON with its length and type, and reads the whole answer', async () => {
    let got: { type: string | undefined; length: string | undefined; body: string } = { type: undefined, length: undefined, body: '' };
    const s = await serve((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        got = { type: req.headers['content-type'], length: req.headers['content-length'], body };
        res.writeHead(201, { 'X-Answer': 'yes' }).end('{"ok":"好"}');
      });
    });
    const res = await call({ method: 'POST', url: `${s.url}/x`, body: { q: '你好' }, timeoutMs: 2000 });
    expect(got).toEqual({ type: 'application/json', length: String(Buffer.byteLength('{"q":"你好"}')), body: '{"q":"你好"}' });
    expect(res.status).toBe(201);
    expect(res.headers['x-answer']).toBe('yes');
    expect(JSON.parse(res.body.toString())).toEqual({ ok: '好' });
  });

  it('refuses an answer over its bound, and never follows a redirect', async () => {
    const s = await serve((req, res) => {
      if (req.url === '/big') return void res.end(Buffer.alloc(64 * 1024, 120));
      res.writeHead(302, { Location: '/big' }).end();
    });
    await expect(call({ url: `${s.url}/big`, timeoutMs: 2000 }, 1024)).rejects.toMatchObject({ code: 'ETOOLARGE' });
    expect((await call({ url: `${s.url}/big`, timeoutMs: 2000 }, 64 * 1024)).body.length).toBe(64 * 1024);
    expect((await call({ url: `${s.url}/moved`, timeoutMs: 2000 })).status).toBe(302);
  });

  it('times out on a server that never finishes, and names a refused connection', async () => {
    const s = await serve((_req, res) => res.write('partial'));
    const err = await call({ url: s.url, timeoutMs: 200 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NetworkError);
    expect((err as NetworkError).code).toBe('ETIMEDOUT');
    const closed = await serve(() => undefined);
    const port = closed.port;
    await new Promise((r) => closed.server.close(r));
    servers.splice(servers.indexOf(closed.server), 1);
    await expect(call({ url: `http://127.0.0.1:${port}/`, timeoutMs: 2000 })).rejects.toMatchObject({ code: 'ECONNREFUSED' });
  });
});

describe('open', () => {
  it('resolves on the head and streams the body as it comes', async () => {
    let push: ((s: string) => void) | undefined;
    const s = await serve((_req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/event-stream' });
      res.write('data: 1\n\n');
      push = (t) => res.end(t);
    });
    const { response } = open({ method: 'POST', url: s.url, body: {}, timeoutMs: 2000 });
    const res = await response;
    expect(res.status).toBe(200);
    const chunks: string[] = [];
    res.body.on('data', (c: Buffer) => {
      chunks.push(c.toString());
      push?.('data: 2\n\n');
    });
    await new Promise((r) => res.body.on('end', r));
    expect(chunks.join('')).toBe('data: 1\n\ndata: 2\n\n');
  });

  it('cancels before the head (the promise rejects with the reason) and after it (the body ends with it)', async () => {
    let requests = 0;
    const s = await serve((req, res) => {
      requests++;
      if (req.url === '/slow') return; // no head, ever
      res.writeHead(200);
      res.write('x');
    });
    const before = open({ url: `${s.url}/slow`, timeoutMs: 5000 });
    const why = new Error('stopped');
    await new Promise((r) => setTimeout(r, 50));
    before.cancel(why);
    await expect(before.response).rejects.toBe(why);
    const after = open({ url: `${s.url}/stream`, timeoutMs: 5000 });
    const res = await after.response;
    const ended = new Promise((r) => res.body.on('error', r));
    after.cancel(why);
    expect(await ended).toBe(why);
    expect(requests).toBe(2);
  });

  it('times out waiting for the head', async () => {
    const s = await serve(() => undefined);
    await expect(open({ url: s.url, timeoutMs: 150 }).response).rejects.toMatchObject({ code: 'ETIMEDOUT' });
  });
});

describe('the proxy from the environment', () => {
  describe('which proxy, if any', () => {
    withEnv({});
    it('HTTP_PROXY for http and HTTPS_PROXY for https (lower case first, ALL_PROXY for either), unless NO_PROXY covers the host', async () => {
      const target = await serve((req, res) => res.end(`hello ${req.url}`));
      const [upper, lower, secure, all] = [await proxy(), await proxy(), await proxy(), await proxy()];
      const via = () => [upper, lower, secure, all].map((p) => p.seen.map((s) => `${s.method} ${s.target}`));
      const get = async (url: string) => (await call({ url, timeoutMs: 2000 }).then((r) => r.body.toString(), (e: NetworkError) => e.code));
      // A proxy written without a scheme is http.
      Object.assign(process.env, { HTTP_PROXY: `http://127.0.0.1:${upper.port}`, http_proxy: `127.0.0.1:${lower.port}`, NO_PROXY: 'localhost, .internal.example:8443' });
      expect(await get(`http://dify.local:${target.port}/a`)).toBe('hello /a');
      expect(await get(`http://localhost:${target.port}/b`)).toBe('hello /b');
      // A bare name covers that host only; `.internal.example:8443` the hosts under it on that port only.
      expect(await get(`http://sub.localhost:${target.port}/c`)).toBe('hello /c');
      expect(await get(`http://a.internal.example:${target.port}/d`)).toBe('hello /d');
      expect(via()).toEqual([[], ['GET', 'GET', 'GET'].map((m, i) => `${m} http://${['dify.local', 'sub.localhost', 'a.internal.example'][i]}:${target.port}/${'acd'[i]}`), [], []]);
      // https: ALL_PROXY when HTTPS_PROXY is unset, HTTPS_PROXY when set (the tunnel reaches a plain server, so TLS fails after it).
      process.env['ALL_PROXY'] = `http://127.0.0.1:${all.port}`;
      await get(`https://api.openai.com:${target.port}/v1`);
      process.env['https_proxy'] = `http://127.0.0.1:${secure.port}`;
      await get(`https://api.openai.com:${target.port}/v1`);
      process.env['NO_PROXY'] = '*';
      expect(await get(`http://localhost:${target.port}/e`)).toBe('hello /e');
      expect(via().map((v) => v.length)).toEqual([0, 3, 1, 1]);
      expect(via()[2]).toEqual([`CONNECT api.openai.com:${target.port}`]);
      expect(via()[3]).toEqual([`CONNECT api.openai.com:${target.port}`]);
    });

    it('a proxy variable that is no http(s) URL fails the call with EPROXY', async () => {
      process.env['HTTPS_PROXY'] = 'http://[bad';
      await expect(call({ url: 'https://api.openai.com/v1', timeoutMs: 2000 })).rejects.toMatchObject({ code: 'EPROXY' });
    });
  });

  describe('plain http', () => {
    withEnv({});
    it('goes through HTTP_PROXY with the full URL, with the proxy credentials; NO_PROXY goes direct', async () => {
      const target = await serve((req, res) => res.end(`hello ${req.url}`));
      const p = await proxy({ auth: 'user:p@ss' });
      process.env['HTTP_PROXY'] = `http://user:p%40ss@127.0.0.1:${p.port}`;
      const res = await call({ url: `http://dify.internal:${target.port}/v1/parameters?x=1`, timeoutMs: 2000 });
      expect(res.body.toString()).toBe('hello /v1/parameters?x=1');
      expect(p.seen).toEqual([{ method: 'GET', target: `http://dify.internal:${target.port}/v1/parameters?x=1`, auth: `Basic ${Buffer.from('user:p@ss').toString('base64')}` }]);
      process.env['NO_PROXY'] = '127.0.0.1';
      expect((await call({ url: `${target.url}/direct`, timeoutMs: 2000 })).body.toString()).toBe('hello /direct');
      expect(p.seen).toHaveLength(1);
    });
  });

  describe('a proxy that is not there, or refuses', () => {
    withEnv({});
    it('an unreachable proxy fails the call naming its address (never its credentials); a 407 is EPROXY', async () => {
      const closed = await serve(() => undefined);
      await new Promise((r) => closed.server.close(r));
      servers.splice(servers.indexOf(closed.server), 1);
      Object.assign(process.env, { HTTP_PROXY: `http://u:secret@127.0.0.1:${closed.port}`, HTTPS_PROXY: `http://u:secret@127.0.0.1:${closed.port}` });
      for (const url of ['http://dify.internal/v1', 'https://api.openai.com/v1/models']) {
        const err = (await call({ url, timeoutMs: 2000 }).catch((e: unknown) => e)) as NetworkError;
        expect(err).toBeInstanceOf(NetworkError);
        expect(err.code).toBe('ECONNREFUSED');
        expect(err.message).toContain(`127.0.0.1:${closed.port}`);
        expect(err.message).not.toContain('secret');
      }
      const p = await proxy({ auth: 'u:right' });
      process.env['HTTP_PROXY'] = `http://u:wrong@127.0.0.1:${p.port}`;
      await expect(call({ url: 'http://dify.internal/v1', timeoutMs: 2000 })).rejects.toMatchObject({ code: 'EPROXY', message: 'the proxy answered 407 to the request' });
    });
  });

  it('tunnels https through CONNECT and checks the certificate of the host asked for', async () => {
    const tlsOpts = { cert: readFileSync(`${TLS_DIR}dify.test.cert.pem`), key: readFileSync(`${TLS_DIR}dify.test.key.pem`) };
    const target = await serve((req, res) => res.end(`secure ${req.headers.host}${req.url}`), createHttpsServer(tlsOpts));
    const p = await proxy({ auth: 'u:pw' });
    const run = (env: Record<string, string>, url: string) =>
      new Promise<string>((resolve) => {
        const script = `import('${ROOT}lib/util/http.ts').then(async (m) => { const h = m.default ?? m; try { const r = await h.call({ url: '${url}', timeoutMs: 3000 }); console.log('OK ' + r.status + ' ' + r.body.toString()); } catch (e) { console.log('ERR ' + e.code + ' ' + e.message); } });`;
        const child = spawn(process.execPath, ['--import', 'tsx', '-e', script], { cwd: ROOT, env: { PATH: process.env['PATH'] ?? '', ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
        let out = '';
        child.stdout.on('data', (b: Buffer) => (out += b.toString()));
        child.on('exit', () => resolve(out.trim()));
      });
    const proxyUrl = `http://u:pw@127.0.0.1:${p.port}`;
    const url = `https://dify.test:${target.port}/v1/ping`;
    // Trusting the test certificate: through the tunnel, TLS to dify.test succeeds.
    expect(await run({ HTTPS_PROXY: proxyUrl, NODE_EXTRA_CA_CERTS: `${TLS_DIR}dify.test.cert.pem` }, url)).toBe(`OK 200 secure dify.test:${target.port}/v1/ping`);
    expect(p.seen.at(-1)).toEqual({ method: 'CONNECT', target: `dify.test:${target.port}`, auth: `Basic ${Buffer.from('u:pw').toString('base64')}` });
    // Not trusting it: the tunnel is made, and TLS refuses the certificate.
    expect(await run({ HTTPS_PROXY: proxyUrl }, url)).toMatch(/^ERR (DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE) /);
    // Wrong proxy credentials: a clear proxy error.
    expect(await run({ HTTPS_PROXY: `http://u:wrong@127.0.0.1:${p.port}` }, url)).toBe('ERR EPROXY the proxy answered 407 to CONNECT');
  }, 30_000);
});
