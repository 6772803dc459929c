/**
 * Configuration: read once from the environment, validated, then injected everywhere (README
 * "Configuration"). The core reads its own settings (lib/core/settings.ts); every registered channel
 * kind (lib/channels/index.ts) and backend (lib/backends/index.ts) reads and checks its own, and is
 * on only when its variables say so; `BOTS` adds more instances of a channel, each with its own
 * settings and, if it says so, its own backend. Every error names the variable to fix.
 */
import { readFileSync } from 'fs';
import { BACKEND_KINDS } from './backends';
import { CHANNEL_KINDS } from './channels';
import type { BackendSetup, ChannelKind, ChannelSetup, SettingsContext } from './core/channel';
import { Env } from './core/env';
import type { RawEnv } from './core/env';
import { isInstanceId } from './core/keys';
import type { CoreConfig, LoadOptions } from './core/settings';
import { CORE_VARIABLES, coreSecrets, loadCoreConfig } from './core/settings';
import { ConfigError } from './errors';

export type { LoadOptions } from './core/settings';

/** The variables read here, to put the modules together. */
const COMPOSITION_VARIABLES = ['LLM_PROVIDER', 'BOTS', 'BOTS_FILE'] as const;

export interface Config extends CoreConfig {
  /** Every channel instance on, in registration order; the default instances first. */
  channels: ChannelSetup[];
  /** The deployment's model backend (LLM_PROVIDER); an instance may have its own. */
  backend: BackendSetup;
  platform: 'node' | 'laf';
}

/** Every variable the bot reads (laf rebuilds the app when one of them changes; the README lists each). */
export const CONFIG_VARIABLES: readonly string[] = [
  ...new Set([
    ...CORE_VARIABLES,
    ...COMPOSITION_VARIABLES,
    ...CHANNEL_KINDS.flatMap((k) => k.variables),
    ...BACKEND_KINDS.flatMap((b) => b.variables),
  ]),
];

const BACKEND_VARIABLES = new Set<string>(['LLM_PROVIDER', ...BACKEND_KINDS.flatMap((b) => b.variables)]);

/** LLM_PROVIDER's backend, with its settings; Dify unless only OPENAI_MODEL says otherwise. */
function backendFrom(env: Env, ctx: SettingsContext): BackendSetup {
  const e = env.only(['LLM_PROVIDER', 'DIFY_API_KEY', 'OPENAI_MODEL']);
  const name = e.str('LLM_PROVIDER') ?? (!e.has('DIFY_API_KEY') && e.has('OPENAI_MODEL') ? 'openai' : 'dify');
  const kind = BACKEND_KINDS.find((b) => b.kind === name);
  if (!kind) throw new ConfigError('LLM_PROVIDER', `must be ${BACKEND_KINDS.map((b) => b.kind).join(' or ')}, got "${name}"`);
  return { kind, settings: kind.settings(env, ctx) };
}

interface BotEntry {
  id: string;
  channel: ChannelKind;
  env: Record<string, string>;
}

/**
 * `BOTS` (or the file `BOTS_FILE` names): more channel instances, e.g. a second Official Account
 * bound to its own Dify app: `[{"id": "brand2", "channel": "wechat-oa", "env": {"WECHAT_TOKEN": "…",
 * "DIFY_API_KEY": "app-…"}}]`. An entry's `env` holds that channel's variables and, optionally, a
 * backend's; nothing else (the core's settings are the deployment's).
 */
function botEntries(env: Env, opts: LoadOptions, kinds: readonly ChannelKind[]): BotEntry[] {
  const e = env.only(COMPOSITION_VARIABLES);
  let text = e.text('BOTS');
  const file = e.str('BOTS_FILE');
  if (file !== undefined) {
    if (text !== undefined) throw new ConfigError('BOTS_FILE', 'set BOTS or BOTS_FILE, not both');
    if (opts.platform === 'laf') throw new ConfigError('BOTS_FILE', 'cannot be read here (laf has no files): put the list in BOTS');
    try {
      text = (opts.readFile ?? ((p: string) => readFileSync(p, 'utf8')))(file);
    } catch (err) {
      throw new ConfigError('BOTS_FILE', `cannot read ${file}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  if (text === undefined) return [];
  const where = file !== undefined ? 'BOTS_FILE' : 'BOTS';
  let list: unknown;
  try {
    list = JSON.parse(text);
  } catch {
    throw new ConfigError(where, 'must be valid JSON: a list of {"id", "channel", "env"}');
  }
  if (!Array.isArray(list)) throw new ConfigError(where, 'must be a JSON list of {"id", "channel", "env"}');
  const seen = new Set<string>();
  return list.map((item: unknown, i) => {
    const o = (item && typeof item === 'object' ? item : {}) as { id?: unknown; channel?: unknown; env?: unknown };
    const id = typeof o.id === 'string' ? o.id : '';
    if (!isInstanceId(id)) throw new ConfigError(where, `entry ${i + 1}: "id" must be 1-32 lower-case letters, digits or dashes, starting with a letter`);
    const channel = kinds.find((k) => k.kind === o.channel);
    if (!channel) throw new ConfigError(where, `"${id}": "channel" must be one of ${kinds.map((k) => k.kind).join(', ')}`);
    if (seen.has(`${channel.kind}@${id}`)) throw new ConfigError(where, `"${id}" is listed twice for ${channel.kind}`);
    seen.add(`${channel.kind}@${id}`);
    const vars = o.env && typeof o.env === 'object' && !Array.isArray(o.env) ? (o.env as Record<string, unknown>) : undefined;
    if (!vars) throw new ConfigError(where, `"${id}": "env" must be an object of that instance's variables`);
    const own = new Set(channel.variables);
    for (const [k, v] of Object.entries(vars)) {
      if (typeof v !== 'string') throw new ConfigError(where, `"${id}": the value of ${k} must be a string`);
      if (!own.has(k) && !BACKEND_VARIABLES.has(k)) throw new ConfigError(where, `"${id}": ${k} is not one of ${channel.kind}'s or a backend's variables (the other settings are the deployment's)`);
    }
    return { id, channel, env: vars as Record<string, string> };
  });
}

/** `raw` without `names`, with `extra` on top: an instance starts from nothing of the default instance's own. */
function overlay(raw: RawEnv, names: Iterable<string>, extra: Record<string, string>): RawEnv {
  const out: Record<string, string | undefined> = { ...raw };
  for (const n of names) delete out[n];
  return { ...out, ...extra };
}

export function loadConfig(raw: RawEnv = process.env, opts: LoadOptions = {}): Config {
  const env = Env.of(raw);
  const platform = opts.platform ?? 'node';
  const core = loadCoreConfig(env, opts);
  const ctx: SettingsContext = { core, platform, instance: '' };
  const backend = backendFrom(env, ctx);
  const channels: ChannelSetup[] = [];
  const kinds = [...CHANNEL_KINDS, ...(opts.extraKinds ?? [])];
  for (const kind of kinds) {
    const settings = kind.settings(env, ctx);
    if (settings !== undefined) channels.push({ kind, instance: '', settings });
  }
  for (const bot of botEntries(env, opts, kinds)) {
    const own = Env.of(overlay(raw, bot.channel.variables, bot.env));
    const instanceCtx = { ...ctx, instance: bot.id };
    const settings = bot.channel.settings(own, instanceCtx);
    if (settings === undefined) throw new ConfigError('BOTS', `"${bot.id}": its env does not turn ${bot.channel.kind} on (e.g. ${bot.channel.variables[0] ?? ''})`);
    const ownBackend = Object.keys(bot.env).some((k) => BACKEND_VARIABLES.has(k));
    channels.push({
      kind: bot.channel,
      instance: bot.id,
      settings,
      backend: ownBackend ? backendFrom(Env.of(overlay(raw, BACKEND_VARIABLES, bot.env)), instanceCtx) : undefined,
    });
  }
  if (channels.length === 0) {
    throw new ConfigError('WECHAT_TOKEN', `is required: no channel is on (set WECHAT_TOKEN for a WeChat Official Account, or the variables of another channel: ${kinds.map((k) => k.kind).join(', ')}; README "Configuration")`);
  }
  return { ...core, channels, backend, platform };
}

/** The settings of the default instance of channel `kind`, if it is on. */
export function channelSettings<S>(config: Config, kind: ChannelKind<S>): S | undefined {
  return config.channels.find((c) => c.kind === kind && c.instance === '')?.settings as S | undefined;
}

/** The secrets in a config, for log redaction. */
export function secretsOf(config: Config): string[] {
  const backendSecrets = (b: BackendSetup) => b.kind.secrets(b.settings);
  return [
    ...coreSecrets(config),
    ...backendSecrets(config.backend),
    ...config.channels.flatMap((c) => [...c.kind.secrets(c.settings), ...(c.backend ? backendSecrets(c.backend) : [])]),
  ].filter((s): s is string => typeof s === 'string' && s !== '');
}
