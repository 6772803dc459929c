/** The access token: shared through the store, one refresher, refreshed ahead of expiry and on demand. */
import { afterEach, describe, expect, it } from 'vitest';
import type { Clock } from '../../../lib/util/clock';
import { WechatApiError } from '../../../lib/errors';
import { memoryLogger } from '../../../lib/util/log';
import { startWechatApiSim } from '../../../lib/sim/wechat-api-sim';
import type { WechatApiSim } from '../../../lib/sim/wechat-api-sim';
import { Store } from '../../../lib/store';
import { nedbBackend } from '../../../lib/store/nedb';
import { createWechatApi } from '../../../lib/channels/wechat-oa/api';
import { TokenCache } from '../../../lib/channels/wechat-oa/token';

const APP = { appId: 'wxtoken0000000001', appSecret: 'secret-for-token-tests-0001' };
let sim: WechatApiSim;
let store: Store;
afterEach(async () => {
  await sim?.close();
  await store?.close();
});

/** A clock we move by hand; sleeping advances it (no real waiting). */
function manualClock(start = Date.now()): Clock & { advance(ms: number): void } {
  let t = start;
  return {
    now: () => t,
    sleep: async (ms) => {
      t += ms;
      await new Promise((r) => setImmediate(r));
    },
    advance: (ms) => (t += ms),
  };
}

async function setup(ttlS = 7200, clock: Clock = manualClock()) {
  sim = await startWechatApiSim({ ...APP, tokenTtlS: ttlS });
  store = await Store.open(nedbBackend({ inMemory: true }));
  const logger = memoryLogger();
  const api = createWechatApi({ baseUrl: sim.url, ...APP });
  const cache = () => new TokenCache({ store, api, clock, logger, appId: APP.appId });
  return { cache, logger, api };
}

describe('TokenCache', () => {
  it('fetches once and shares the token through the store with every cache (instance)', async () => {
    const { cache } = await setup();
    const a = cache();
    const b = cache();
    const t1 = await a.get();
    expect(await b.get()).toBe(t1);
    expect(await a.get()).toBe(t1);
    expect(sim.stableTokenCalls).toBe(1);
  });

  it('lets only one refresher call WeChat when many ask at once', async () => {
    const { cache } = await setup(7200, { now: Date.now, sleep: (ms) => new Promise((r) => setTimeout(r, ms)) });
    const tokens = await Promise.all(Array.from({ length: 10 }, () => cache().get()));
    expect(new Set(tokens).size).toBe(1);
    expect(sim.stableTokenCalls).toBe(1);
  });

  it('refreshes ahead of expiry', async () => {
    const clock = manualClock();
    const { cache } = await setup(7200, clock);
    const c = cache();
    const t1 = await c.get();
    clock.advance((7200 - 301) * 1000); // 5 min 1 s left: still used
    await c.get();
    expect(sim.stableTokenCalls).toBe(1);
    clock.advance(2000); // inside the 5-minute margin: refreshed
    await c.get();
    expect(sim.stableTokenCalls).toBe(2);
    expect(t1).toBeTruthy();
  });

  it('fetches again after an API call reports the token invalid', async () => {
    const { cache } = await setup();
    const c = cache();
    const t1 = await c.get();
    sim.expireCurrent();
    await c.invalidate(t1);
    const t2 = await c.get();
    expect(t2).not.toBe(t1);
    expect(sim.stableTokenCalls).toBe(2);
  });

  it('takes over a lock left by a refresher that died', async () => {
    const clock = manualClock();
    const { cache } = await setup(7200, clock);
    expect(await store.acquireLease(`lock:access_token:${APP.appId}`, 'dead', clock.now() + 10_000, clock.now())).toBe(true);
    const token = await cache().get(); // waits (on the manual clock) until the dead lock expires
    expect(token).toBeTruthy();
    expect(sim.stableTokenCalls).toBe(1);
  });

  it('reports a wrong secret as a WeChat error without the secret or any token', async () => {
    sim = await startWechatApiSim({ ...APP });
    store = await Store.open(nedbBackend({ inMemory: true }));
    const api = createWechatApi({ baseUrl: sim.url, appId: APP.appId, appSecret: 'wrong-secret-value-123' });
    const err = await new TokenCache({ store, api, clock: manualClock(), logger: memoryLogger(), appId: APP.appId }).get().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WechatApiError);
    expect(err).toMatchObject({ errcode: 40001 });
    expect(String((err as Error).message)).not.toContain('wrong-secret-value-123');
  });

  it('puts every token it sees on the logger’s redaction list', async () => {
    const { cache, logger } = await setup();
    const t = await cache().get();
    logger.info('oops', { leaked: `token=${t}` });
    expect(logger.lines.join('\n')).not.toContain(t);
  });
});
