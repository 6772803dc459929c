import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { buildTextReply, cdata, xmlSafe } from '../../../lib/channels/wechat-oa/reply';
import { parseXmlFields } from '../../../lib/channels/wechat-oa/xml';

describe('buildTextReply', () => {
  it('swaps the addresses, writes CreateTime in seconds and keeps the official element order', () => {
    const xml = buildTextReply({ toUser: 'oUSER', fromUser: 'gh_xxx', createTime: 1348831860.789, content: '你好' });
    expect(xml).toBe(
      '<xml><ToUserName><![CDATA[oUSER]]></ToUserName><FromUserName><![CDATA[gh_xxx]]></FromUserName><CreateTime>1348831860</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[你好]]></Content></xml>',
    );
  });

  it.each([
    ['a]]>b'],
    [']]>'],
    ['x]]>]]>y]]'],
    ['<xml></xml> & <![CDATA[ nested ]]>'],
    ['line1\nline2\r\n\ttab'],
  ])('round-trips content %j through a real XML parser', (content) => {
    const xml = buildTextReply({ toUser: 'u', fromUser: 'g', createTime: 1, content });
    expect(parseXmlFields(xml, 1 << 20)['Content']).toBe(content.replace(/\r\n/g, '\n').replace(/\r/g, '\n'));
  });

  it('drops characters XML cannot carry instead of producing an invalid document', () => {
    const xml = buildTextReply({ toUser: 'u', fromUser: 'g', createTime: 1, content: 'a\u0000b\u0007c\uD800d😀' });
    expect(parseXmlFields(xml, 1 << 20)['Content']).toBe('abcd😀');
  });

  it('produces well-formed XML that round-trips for any content (property)', () => {
    const content = fc.oneof(fc.string({ unit: 'binary', maxLength: 200 }), fc.array(fc.constantFrom(']]>', ']', '>', '<![CDATA[', '&', '\u0000', '\uD800', '😀', '\r\n'), { maxLength: 20 }).map((a) => a.join('')));
    fc.assert(
      fc.property(content, fc.string({ maxLength: 30 }), (text, user) => {
        const f = parseXmlFields(buildTextReply({ toUser: user || 'u', fromUser: 'g', createTime: 1, content: text }), 1 << 20);
        const expected = xmlSafe(text).replace(/\r\n?/g, '\n');
        expect(f['Content']).toBe(expected);
      }),
      { numRuns: 500 },
    );
  });

  it('cdata splits every ]]> across sections', () => {
    expect(cdata('a]]>b')).toBe('<![CDATA[a]]]]><![CDATA[>b]]>');
  });
});
