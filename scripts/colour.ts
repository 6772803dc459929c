/**
 * Colour in the demo's and the chat tool's output: only when stdout is a terminal, and never with
 * NO_COLOR set to anything but '' (https://no-color.org). Piped to a file or a CI log, the text stays plain.
 */

export function colourOn(stream: { isTTY?: boolean } = process.stdout, env: NodeJS.ProcessEnv = process.env): boolean {
  return stream.isTTY === true && !env['NO_COLOR'];
}

const ON = colourOn();

/** A side note, dimmed on a colour terminal. */
export function dim(text: string): string {
  return ON ? `\x1b[2m${text}\x1b[0m` : text;
}

/** `text` without its colour codes when colour is off (a QR code drawn for the terminal). */
export function plain(text: string): string {
  // eslint-disable-next-line no-control-regex
  return ON ? text : text.replace(/\x1b\[[0-9;]*m/g, '');
}
