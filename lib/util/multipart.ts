/**
 * multipart/form-data bodies for the file uploads the backends take (Dify `/files/upload` and
 * `/audio-to-text`, OpenAI-compatible `/audio/transcriptions`). Written here rather than with
 * FormData, which laf's function sandbox does not provide (docs/laf.md). Pure.
 */
import { randomBytes } from 'crypto';

export interface FilePart {
  name: string;
  filename: string;
  contentType: string;
  bytes: Buffer;
}

/** A field value or file name is quoted; quotes and line breaks in it could end the header early. */
const safe = (s: string) => s.replace(/["\r\n]/g, '_');

export function multipart(fields: Record<string, string>, file: FilePart, boundary = `----wdb${randomBytes(12).toString('hex')}`): { body: Buffer; contentType: string } {
  const parts: Buffer[] = [];
  for (const [k, v] of Object.entries(fields)) {
    parts.push(Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${safe(k)}"\r\n\r\n${v}\r\n`, 'utf8'));
  }
  parts.push(
    Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${safe(file.name)}"; filename="${safe(file.filename)}"\r\nContent-Type: ${safe(file.contentType)}\r\n\r\n`, 'utf8'),
    file.bytes,
    Buffer.from(`\r\n--${boundary}--\r\n`, 'utf8'),
  );
  return { body: Buffer.concat(parts), contentType: `multipart/form-data; boundary=${boundary}` };
}

/**
 * The parts of a multipart body (the simulators read uploads with it): field values as text,
 * files as bytes with their name and type. Bounded by the body it is given.
 */
export function parseMultipart(body: Buffer, contentType: string): { fields: Record<string, string>; files: Record<string, { filename: string; contentType: string; bytes: Buffer }> } {
  const m = /boundary=(?:"([^"]+)"|([^;]+))/i.exec(contentType);
  const boundary = m?.[1] ?? m?.[2];
  const fields: Record<string, string> = {};
  const files: Record<string, { filename: string; contentType: string; bytes: Buffer }> = {};
  if (!boundary) return { fields, files };
  const delim = Buffer.from(`--${boundary}`);
  let at = body.indexOf(delim);
  while (at !== -1) {
    const start = at + delim.length;
    if (body.subarray(start, start + 2).toString() === '--') break;
    const next = body.indexOf(delim, start);
    if (next === -1) break;
    const part = body.subarray(start + 2, next - 2); // after CRLF, before CRLF
    const headEnd = part.indexOf('\r\n\r\n');
    if (headEnd !== -1) {
      const head = part.subarray(0, headEnd).toString('utf8');
      const bytes = part.subarray(headEnd + 4);
      const name = /name="([^"]*)"/i.exec(head)?.[1];
      const filename = /filename="([^"]*)"/i.exec(head)?.[1];
      const type = /content-type:\s*([^\r\n]+)/i.exec(head)?.[1] ?? 'application/octet-stream';
      if (name !== undefined && filename !== undefined) files[name] = { filename, contentType: type.trim(), bytes: Buffer.from(bytes) };
      else if (name !== undefined) fields[name] = bytes.toString('utf8');
    }
    at = next;
  }
  return { fields, files };
}
