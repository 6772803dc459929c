import { describe, expect, it } from 'vitest';
import { RequestError } from '../../../lib/errors';
import { parseInbound, parseXmlFields } from '../../../lib/channels/wechat-oa/xml';

const LIMIT = 256 * 1024;
const head = (type: string) =>
  `<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName><FromUserName><![CDATA[oyORnuP8q7ou2gfYjqLzSIWZf0rs]]></FromUserName><CreateTime>1409735668</CreateTime><MsgType><![CDATA[${type}]]></MsgType>`;

describe('parseInbound', () => {
  it('reads a text message and keeps the 64-bit MsgId as a string', () => {
    const m = parseInbound(`${head('text')}<Content><![CDATA[abcdteT]]></Content><MsgId>6054768590064713728</MsgId></xml>`, LIMIT);
    expect(m).toEqual({
      kind: 'text',
      toUser: 'gh_10f6c3c3ac5a',
      fromUser: 'oyORnuP8q7ou2gfYjqLzSIWZf0rs',
      createTime: 1409735668,
      msgId: '6054768590064713728',
      content: 'abcdteT',
    });
  });

  it('keeps user text exactly: runs of spaces, newlines, leading/trailing blanks, entities in CDATA', () => {
    const text = '  a  b\n\n c\t&amp; <tag> ';
    const m = parseInbound(`${head('text')}\n<Content><![CDATA[${text}]]></Content>\n<MsgId>1</MsgId>\n</xml>`, LIMIT);
    expect(m.kind === 'text' && m.content).toBe(text);
  });

  it('decodes standard entities outside CDATA and accepts user text that mentions <!DOCTYPE in CDATA', () => {
    const m = parseInbound(`${head('text')}<Content>a &lt;b&gt; &amp; c</Content><MsgId>2</MsgId></xml>`, LIMIT);
    expect(m.kind === 'text' && m.content).toBe('a <b> & c');
    const d = parseInbound(`${head('text')}<Content><![CDATA[<!DOCTYPE html><!ENTITY x>]]></Content><MsgId>3</MsgId></xml>`, LIMIT);
    expect(d.kind === 'text' && d.content).toBe('<!DOCTYPE html><!ENTITY x>');
  });

  it('reads every message type', () => {
    expect(parseInbound(`${head('image')}<PicUrl><![CDATA[http://p]]></PicUrl><MediaId><![CDATA[m]]></MediaId><MsgId>1</MsgId></xml>`, LIMIT)).toMatchObject({ kind: 'image', picUrl: 'http://p', mediaId: 'm' });
    expect(parseInbound(`${head('voice')}<MediaId><![CDATA[m]]></MediaId><Format><![CDATA[amr]]></Format><Recognition><![CDATA[腾讯微信团队]]></Recognition><MsgId>1</MsgId></xml>`, LIMIT)).toMatchObject({ kind: 'voice', recognition: '腾讯微信团队', format: 'amr' });
    expect(parseInbound(`${head('voice')}<MediaId><![CDATA[m]]></MediaId><Format><![CDATA[amr]]></Format><MsgId>1</MsgId></xml>`, LIMIT)).toMatchObject({ kind: 'voice', recognition: '' });
    expect(parseInbound(`${head('video')}<MediaId><![CDATA[m]]></MediaId><ThumbMediaId><![CDATA[t]]></ThumbMediaId><MsgId>1</MsgId></xml>`, LIMIT)).toMatchObject({ kind: 'video', thumbMediaId: 't' });
    expect(parseInbound(`${head('shortvideo')}<MediaId><![CDATA[m]]></MediaId><ThumbMediaId><![CDATA[t]]></ThumbMediaId><MsgId>1</MsgId></xml>`, LIMIT)).toMatchObject({ kind: 'shortvideo' });
    expect(parseInbound(`${head('location')}<Location_X>23.134521</Location_X><Location_Y>113.358803</Location_Y><Scale>20</Scale><Label><![CDATA[位置信息]]></Label><MsgId>1</MsgId></xml>`, LIMIT)).toMatchObject({ kind: 'location', latitude: '23.134521', longitude: '113.358803', scale: '20', label: '位置信息' });
    expect(parseInbound(`${head('link')}<Title><![CDATA[t]]></Title><Description><![CDATA[d]]></Description><Url><![CDATA[u]]></Url><MsgId>1</MsgId></xml>`, LIMIT)).toMatchObject({ kind: 'link', title: 't', url: 'u' });
    expect(parseInbound(`${head('miniprogrampage')}<MsgId>9</MsgId></xml>`, LIMIT)).toMatchObject({ kind: 'unknown', msgType: 'miniprogrampage', msgId: '9' });
  });

  it('reads every event type', () => {
    const ev = (e: string, extra = '') => parseInbound(`${head('event')}<Event><![CDATA[${e}]]></Event>${extra}</xml>`, LIMIT);
    expect(ev('subscribe')).toMatchObject({ kind: 'subscribe', eventKey: '' });
    expect(ev('subscribe', '<EventKey><![CDATA[qrscene_123123]]></EventKey><Ticket><![CDATA[TICKET]]></Ticket>')).toMatchObject({ kind: 'subscribe', eventKey: 'qrscene_123123', ticket: 'TICKET' });
    expect(ev('unsubscribe')).toMatchObject({ kind: 'unsubscribe' });
    expect(ev('CLICK', '<EventKey><![CDATA[HELP]]></EventKey>')).toMatchObject({ kind: 'click', eventKey: 'HELP' });
    expect(ev('VIEW', '<EventKey><![CDATA[www.qq.com]]></EventKey>')).toMatchObject({ kind: 'view', eventKey: 'www.qq.com' });
    expect(ev('SCAN', '<EventKey><![CDATA[123123]]></EventKey><Ticket><![CDATA[T]]></Ticket>')).toMatchObject({ kind: 'scan', eventKey: '123123' });
    expect(ev('LOCATION', '<Latitude>23.137466</Latitude>')).toMatchObject({ kind: 'unknown', msgType: 'event', event: 'LOCATION', msgId: '' });
  });

  it('rejects bodies missing the fields every push has', () => {
    expect(() => parseInbound('<xml><Content>x</Content></xml>', LIMIT)).toThrow(RequestError);
    expect(() => parseInbound(`${head('text').replace('1409735668', 'soon')}</xml>`, LIMIT)).toThrow(/CreateTime/);
    expect(() => parseInbound('<other/>', LIMIT)).toThrow(/root/);
  });

  it('refuses a FromUserName that is not an OpenID (one with a colon would read as another channel’s key)', () => {
    for (const from of ['api:appa:alice', 'ilink:o9cq80owner@im.wechat', 'o x', 'a'.repeat(65)]) {
      expect(() => parseInbound(`${head('text').replace('oyORnuP8q7ou2gfYjqLzSIWZf0rs', from)}<Content>/clear</Content><MsgId>1</MsgId></xml>`, LIMIT)).toThrow(/FromUserName/);
    }
    expect(parseInbound(`${head('text')}<Content>/clear</Content><MsgId>1</MsgId></xml>`, LIMIT)).toMatchObject({ fromUser: 'oyORnuP8q7ou2gfYjqLzSIWZf0rs' });
  });
});

describe('parseXmlFields on hostile input', () => {
  const code = (xml: string, limit = LIMIT) => {
    try {
      parseXmlFields(xml, limit);
      return 'accepted';
    } catch (err) {
      return err instanceof RequestError ? `${err.status}:${err.code}` : 'crash';
    }
  };

  it('refuses DOCTYPE and entity declarations (billion laughs, XXE)', () => {
    const laughs = '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]><xml><Content>&lol2;</Content></xml>';
    expect(code(laughs)).toBe('400:hostile_xml');
    expect(code('<!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><xml><Content>&xxe;</Content></xml>')).toBe('400:hostile_xml');
  });

  it('refuses deep nesting and element floods', () => {
    expect(code('<xml>' + '<a>'.repeat(50) + '</a>'.repeat(50) + '</xml>')).toBe('400:hostile_xml');
    expect(code('<xml>' + '<a>1</a>'.repeat(1000) + '</xml>')).toBe('400:hostile_xml');
  });

  it('accepts what WeChat sends around the root: a BOM, a declaration, whitespace, comments, self-closing tags', () => {
    expect(code('\uFEFF<?xml version="1.0" encoding="utf-8"?>\n<!-- c -->\n<xml><A/><B>1</B></xml>\n')).toBe('accepted');
  });

  it('answers oversized bodies with 413', () => {
    expect(code('<xml><Content>' + 'x'.repeat(2000) + '</Content></xml>', 1024)).toBe('413:too_large');
  });

  it('reports malformed XML as 400', () => {
    for (const bad of ['<xml><a></xml>', '<xml><![CDATA[x</xml>', '<xml', 'not xml at all', '<xml><a>1</b></xml>', '', '<xml></xml><xml></xml>', 'junk<xml></xml>', '<xml></xml>junk', '<xml><a>', '<xml><1a>x</1a></xml>', '<![CDATA[x]]><xml></xml>']) {
      expect(code(bad)).toMatch(/^400:/);
    }
  });
});
