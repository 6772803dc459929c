/**
 * `npm run openai-sim`: a standalone OpenAI-compatible simulator, to run `npm start` fully offline
 * with LLM_PROVIDER=openai. Answers every question with an echo (after some thinking that never
 * shows) in OPENAI_SIM_LATENCY_MS (default 1500), model OPENAI_MODEL (default sim-model), any key.
 * Listens on OPENAI_SIM_PORT (default 8791).
 */
import { startOpenAISim } from '../lib/sim/openai-sim';
import { runSim, simPort } from './sim-cli';

const port = simPort('openai-sim', 'OPENAI_SIM_PORT');

runSim('openai-sim', [{ port, variable: 'OPENAI_SIM_PORT' }], async () => {
  const model = process.env['OPENAI_MODEL'] ?? 'sim-model';
  const latency = Number(process.env['OPENAI_SIM_LATENCY_MS'] ?? 1500);
  const sim = await startOpenAISim({
    model,
    port,
    script: (body) => ({ kind: 'answer', text: `（模拟模型）你问的是：**${String(body.messages?.at(-1)?.content ?? '')}**`, reasoning: '先想一想……', durationMs: latency }),
  });
  console.log(`OpenAI-compatible simulator on ${sim.url} (model ${model}). Set LLM_PROVIDER=openai OPENAI_BASE_URL=${sim.url} OPENAI_MODEL=${model}.`);
});
