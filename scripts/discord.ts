/**
 * `npm run discord -- register`: register the bot's slash commands (`/ask question:`, `/clear`) as
 * global commands of the application (PUT /applications/{id}/commands, which replaces the global
 * commands). Needs DISCORD_APPLICATION_ID and DISCORD_BOT_TOKEN (DISCORD_API_BASE for a simulator).
 * The bot token is never printed.
 */
import { COMMANDS } from '../lib/channels/discord/interactions';
import { DiscordApiError, createDiscordApi } from '../lib/channels/discord/api';

async function main(): Promise<number> {
  if (process.argv[2] !== 'register') {
    console.error('usage: npm run discord -- register');
    return 2;
  }
  const applicationId = process.env['DISCORD_APPLICATION_ID'];
  const botToken = process.env['DISCORD_BOT_TOKEN'];
  if (!applicationId || !/^\d{5,25}$/.test(applicationId) || !botToken) {
    console.error('Configuration error: set DISCORD_APPLICATION_ID (Developer Portal → General Information) and DISCORD_BOT_TOKEN (→ Bot → Reset Token).');
    return 2;
  }
  const api = createDiscordApi({ apiBase: (process.env['DISCORD_API_BASE'] ?? 'https://discord.com/api/v10').replace(/\/+$/, ''), applicationId });
  try {
    const n = await api.registerCommands(botToken, COMMANDS);
    console.log(`Registered ${n} global commands (/ask, /clear). New global commands can take a few minutes to appear in clients.`);
    return 0;
  } catch (err) {
    if (err instanceof DiscordApiError) {
      console.error(`Discord refused: ${err.message}${err.status === 401 ? ' (DISCORD_BOT_TOKEN is wrong)' : ''}`);
      return 1;
    }
    throw err;
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err instanceof Error ? err.message : String(err));
    process.exit(1);
  },
);
