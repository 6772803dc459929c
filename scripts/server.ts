/** `npm start`: the self-hosted server (lib/adapters/server/main.ts). */
import { runServer } from '../lib/adapters/server/main';

void runServer();
