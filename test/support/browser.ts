/**
 * A real Chromium for page tests: Debian's package (`apt-get install -y chromium`) driven by
 * playwright-core, which downloads no browser of its own. Without one the browser suites skip with
 * one line saying how to get it, so `npm test` passes on a fresh machine.
 */
import { existsSync } from 'fs';
import { chromium } from 'playwright-core';
import type { Browser } from 'playwright-core';

export const CHROMIUM = process.env['CHROMIUM_PATH'] ?? '/usr/bin/chromium';
export const haveChromium = existsSync(CHROMIUM);

if (!haveChromium) console.log(`browser tests skipped: no Chromium at ${CHROMIUM} (apt-get install -y chromium, or set CHROMIUM_PATH)`);

export async function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // As root, without a sandbox; and no background traffic to hosts this network refuses.
    // playwright gives every launch a fresh profile of its own.
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}
