/**
 * Runs function sources the way laf does (docs/laf.md):
 * - compile with TypeScript 4.9.5 `transpile` and laf's options (module Node16, target ES2022);
 * - wrap like laf's FunctionModule and run it with `vm` in a new context that exposes only laf's
 *   sandbox globals (no TextDecoder, AbortController, structuredClone, …);
 * - resolve `require` like laf: `@lafjs/cloud` from the runtime, npm packages only if laf.yaml lists
 *   them, and never an ESM-only package (Node 20.10 cannot `require` ESM);
 * - build `ctx` exactly like laf: lower-cased headers, the body as express-xml-bodyparser makes it
 *   (xml2js: lower-cased tags, arrays, whitespace folded), the raw XML at `ctx.request.rawBody`, and an
 *   Express-like response whose `send` rules apply to the returned value.
 */
import { readFileSync } from 'fs';
import { builtinModules, createRequire } from 'module';
import { dirname, join } from 'path';
import { fileURLToPath } from 'url';
import vm from 'vm';
import ts from 'typescript-laf';
import { parseString } from 'xml2js';
import type Express from 'express';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const rootRequire = createRequire(join(ROOT, 'package.json'));

/** laf's compile step (server/src/utils/lang.ts). */
export function lafTranspile(source: string, name: string): string {
  return ts.transpile(
    source,
    { module: ts.ModuleKind.Node16, target: ts.ScriptTarget.ES2022, removeComments: true, inlineSourceMap: true },
    `${name}.ts`,
  );
}

/** Syntax errors TypeScript 4.9.5 reports for a source file (TS-5-only constructs show up here). */
export function ts49SyntaxErrors(source: string, fileName = 'source.ts'): string[] {
  const r = ts.transpileModule(source, {
    reportDiagnostics: true,
    compilerOptions: { module: ts.ModuleKind.Node16, target: ts.ScriptTarget.ES2022 },
    fileName,
  });
  return (r.diagnostics ?? []).map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'));
}

/** The npm packages laf.yaml's spec.dependencies lists (a two-level YAML map, read by hand). */
export function lafDependencies(yaml = readFileSync(join(ROOT, 'laf.yaml'), 'utf8')): Record<string, string> {
  const out: Record<string, string> = {};
  let inDeps = false;
  for (const line of yaml.split('\n')) {
    if (/^\s{2}dependencies:\s*$/.test(line)) {
      inDeps = true;
      continue;
    }
    if (inDeps) {
      const m = /^\s{4}"?([^":]+)"?:\s*(\S+)\s*$/.exec(line);
      if (!m) break;
      out[m[1] as string] = m[2] as string;
    }
  }
  return out;
}

function packageName(spec: string): string {
  const parts = spec.split('/');
  return spec.startsWith('@') ? `${parts[0]}/${parts[1]}` : (parts[0] as string);
}

/** Is this resolved file an ES module (what Node 20.10's `require` refuses)? */
function isEsm(file: string): boolean {
  if (file.endsWith('.mjs')) return true;
  if (file.endsWith('.cjs') || !file.endsWith('.js')) return false;
  for (let dir = dirname(file); dir !== dirname(dir); dir = dirname(dir)) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { type?: string };
      return pkg.type === 'module';
    } catch {
      // no package.json here; go up
    }
  }
  return false;
}

export interface LafRuntimeOptions {
  /** Modules the laf runtime provides itself, e.g. a fake `@lafjs/cloud`. */
  builtins: Record<string, unknown>;
  /** Packages installed on the laf app (laf.yaml spec.dependencies). */
  dependencies: Record<string, string>;
  /** Collects every module the function requires. */
  required?: Set<string>;
  /** Resolve npm packages from this directory's node_modules (default: the repository's). */
  resolveFrom?: string;
  /** The sandbox's console (laf gives each function its own logger). */
  console?: Pick<Console, 'log' | 'info' | 'warn' | 'error' | 'debug'>;
}

/** Load a function's source as laf does; returns its module exports. */
export function loadLafFunction(source: string, name: string, opts: LafRuntimeOptions): Record<string, unknown> {
  const code = lafTranspile(source, name);
  const resolver = opts.resolveFrom ? createRequire(join(opts.resolveFrom, 'package.json')) : rootRequire;
  const lafRequire = (spec: string): unknown => {
    opts.required?.add(spec);
    if (spec in opts.builtins) return opts.builtins[spec];
    if (builtinModules.includes(spec.replace(/^node:/, ''))) return rootRequire(spec);
    const pkg = packageName(spec);
    if (!(pkg in opts.dependencies)) {
      throw Object.assign(new Error(`Cannot find module '${spec}': not in laf.yaml spec.dependencies`), { code: 'MODULE_NOT_FOUND' });
    }
    const file = resolver.resolve(spec);
    if (isEsm(file)) {
      throw Object.assign(new Error(`require() of ES Module ${spec} is not supported on laf (Node 20.10)`), { code: 'ERR_REQUIRE_ESM' });
    }
    return resolver(file);
  };
  // laf's FunctionModule.wrap and buildSandbox (runtimes/nodejs/src/support/engine/module.ts)
  const wrapped = [
    'function require(name){__from_modules.push(__filename);return __require(name,__from_modules,__filename);}',
    code,
    '\nmodule.exports;',
  ].join(' ');
  const _module = { exports: {} };
  const sandbox: Record<string, unknown> = {
    __filename: name,
    module: _module,
    exports: _module.exports,
    console: opts.console ?? console,
    __require: lafRequire,
    RegExp,
    Buffer,
    setImmediate,
    clearImmediate,
    Float32Array,
    setInterval,
    clearInterval,
    setTimeout,
    clearTimeout,
    process,
    URL,
    fetch: globalThis.fetch,
    global: null,
    __from_modules: [],
    ObjectId: class ObjectId {},
  };
  sandbox['global'] = sandbox;
  const script = new vm.Script(wrapped, { filename: name });
  return script.runInNewContext(sandbox) as Record<string, unknown>;
}

/** express-xml-bodyparser 0.3.0 with laf's defaults: xml2js explicitArray, normalize, normalizeTags, trim. */
export function xmlBodyParser(xml: string): Promise<unknown> {
  return new Promise((resolve, reject) =>
    parseString(xml, { async: false, explicitArray: true, normalize: true, normalizeTags: true, trim: true }, (err, result) =>
      err ? reject(err) : resolve(result),
    ),
  );
}

export interface LafResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
  destroyed: boolean;
}

/**
 * Invoke a loaded function like laf's router does: build ctx, await `default || main`, then
 * `ctx.response.send(result)` unless the response was ended or destroyed.
 */
export async function invokeLaf(
  mod: Record<string, unknown>,
  req: { method: string; query: Record<string, string>; rawXml?: string; json?: string; headers?: Record<string, string> },
): Promise<LafResponse> {
  const fn = (mod['default'] ?? mod['main']) as ((ctx: unknown) => Promise<unknown>) | undefined;
  if (typeof fn !== 'function') throw new Error('laf finds no default export or main in the function');
  const res: LafResponse = { status: 200, headers: {}, body: '', destroyed: false };
  const response = {
    status(code: number) {
      res.status = code;
      return response;
    },
    setHeader(name: string, value: string) {
      res.headers[name.toLowerCase()] = value;
      return response;
    },
    destroy() {
      res.destroyed = true;
    },
  };
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(req.headers ?? {})) headers[k.toLowerCase()] = v;
  let body: unknown = {};
  const request: Record<string, unknown> = { headers };
  if (req.rawXml !== undefined) {
    headers['content-type'] ??= 'text/xml';
    body = await xmlBodyParser(req.rawXml); // malformed XML would be a 400 from laf before the function runs
    request['rawBody'] = req.rawXml;
  } else if (req.json !== undefined) {
    // express.json: parsed into ctx.body, no raw copy kept (a 64-bit number rounds here, as on laf).
    headers['content-type'] ??= 'application/json';
    body = JSON.parse(req.json) as unknown;
  }
  const ctx = { __function_name: 'wechat', requestId: 'test-request', query: req.query, body, headers, method: req.method, user: null, request, response };
  const result = await fn(ctx);
  if (!res.destroyed) {
    // Express res.send: a string is text/html unless a type was set; a number becomes a string; undefined is empty.
    if (typeof result === 'string' || typeof result === 'number') {
      res.body = String(result);
      res.headers['content-type'] ??= 'text/html; charset=utf-8';
    } else if (result !== undefined) {
      res.body = JSON.stringify(result);
      res.headers['content-type'] ??= 'application/json; charset=utf-8';
    }
  }
  return res;
}

/**
 * Serve loaded laf functions over a real Express server, the way laf's runtime does
 * (runtimes/nodejs/src/handler/invoke.ts): the path names the function, `ctx.response` is
 * Express's `res`, and the return value is sent with `res.send` only if the response is still open.
 * For functions that stream.
 */
export async function serveLafOverExpress(functions: Record<string, Record<string, unknown>>): Promise<{ url: string; close(): Promise<void> }> {
  const express = rootRequire('express') as typeof Express;
  const app = express();
  app.use(express.json());
  app.use(express.urlencoded({ extended: true }));
  // XML as laf's express-xml-bodyparser leaves it: parsed into the body, the raw text at `rawBody`.
  app.use((req, res, next) => {
    if (!/^(text|application)\/xml\b/.test(String(req.headers['content-type'] ?? ''))) return next();
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(parts).toString('utf8');
      (req as unknown as { rawBody: string }).rawBody = raw;
      xmlBodyParser(raw).then(
        (body) => {
          req.body = body;
          next();
        },
        () => void res.status(400).send('malformed XML'), // laf refuses it before the function runs
      );
    });
  });
  app.all('*', (req, res) => {
    void (async () => {
      const mod = functions[req.path.slice(1)];
      const fn = (mod?.['default'] ?? mod?.['main']) as ((ctx: unknown) => Promise<unknown>) | undefined;
      if (!fn) return void res.status(404).send('Function Not Found');
      const ctx = { __function_name: req.path.slice(1), requestId: 'test-request', query: req.query, body: req.body, headers: req.headers, method: req.method, user: null, request: req, response: res };
      try {
        const result = await fn(ctx);
        if (res.writableEnded === false) res.send(typeof result === 'number' ? String(result) : result);
      } catch {
        if (!res.headersSent) res.status(500).send({ error: 'Internal Server Error' });
      }
    })();
  });
  const server = app.listen(0, '127.0.0.1');
  await new Promise<void>((r) => server.once('listening', () => r()));
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise<void>((r) => (server.closeAllConnections(), server.close(() => r()))),
  };
}
