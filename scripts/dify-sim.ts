/**
 * `npm run dify-sim`: a standalone Dify API simulator, to run `npm start` fully offline.
 * Answers every question with an echo after DIFY_SIM_LATENCY_MS (default 1500) and accepts the
 * key DIFY_API_KEY (default app-local-sim). Listens on DIFY_SIM_PORT (default 8790).
 */
import { startDifySim } from '../lib/sim/dify-sim';
import { runSim, simPort } from './sim-cli';

const port = simPort('dify-sim', 'DIFY_SIM_PORT');

runSim('dify-sim', [{ port, variable: 'DIFY_SIM_PORT' }], async () => {
  const apiKey = process.env['DIFY_API_KEY'] ?? 'app-local-sim';
  const latency = Number(process.env['DIFY_SIM_LATENCY_MS'] ?? 1500);
  const sim = await startDifySim({
    apiKey,
    port,
    script: (body) => ({ kind: 'answer', text: `（模拟 Dify）你问的是：**${String(body.query)}**`, durationMs: latency }),
  });
  console.log(`Dify simulator on ${sim.url} (key ${apiKey}). Set DIFY_BASE_URL=${sim.url} DIFY_API_KEY=${apiKey}.`);
});
