// The benchmark's peers ship no types of their own.
declare module 'wechat' {
  const wechat: (token: string, handler: (req: never, res: never) => void) => (req: unknown, res: unknown, next: unknown) => void;
  export default wechat;
}
declare module 'co-wechat' {
  const wechat: (config: { token: string; appid: string; encodingAESKey?: string }) => { middleware(fn: (message: never, ctx: unknown) => Promise<unknown>): (ctx: unknown, next: unknown) => Promise<void> };
  export default wechat;
}
declare module 'express-xml-bodyparser' {
  const xmlparser: () => (req: unknown, res: unknown, next: unknown) => void;
  export default xmlparser;
}
