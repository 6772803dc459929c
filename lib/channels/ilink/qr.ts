/**
 * The login QR code drawn for people: in a terminal (`npm run ilink -- login`) and as inline SVG on
 * the console's iLink page (inline, so the console's Content-Security-Policy needs no change). The
 * code encodes the service's `qrcode_img_content` URL, which the owner scans with WeChat.
 */
import { toString as qrString } from 'qrcode';

/** Half-block characters, two rows per line, with a quiet zone. */
export function qrTerminal(content: string): Promise<string> {
  return qrString(content, { type: 'terminal', small: true, errorCorrectionLevel: 'M' });
}

/** An `<svg>` element; only our modules (paths), never the content as text. */
export async function qrSvg(content: string): Promise<string> {
  const svg = await qrString(content, { type: 'svg', errorCorrectionLevel: 'M', margin: 2, width: 240 });
  return svg.replace(/^<\?xml[^>]*>\s*/, '');
}
