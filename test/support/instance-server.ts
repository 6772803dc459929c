/**
 * A server process as `npm start` runs it, with the example channel of docs/channels.md registered
 * and, when SHARED_STORE_URL is set, on the test's shared store (test/support/shared-store.ts).
 */
import { runServer } from '../../lib/adapters/server/main';
import { exampleChat } from './example-channel';
import { sharedStoreBackend } from './shared-store';

const shared = process.env['SHARED_STORE_URL'];
void runServer({ extraKinds: [exampleChat], ...(shared ? { backend: () => sharedStoreBackend(shared) } : {}) });
