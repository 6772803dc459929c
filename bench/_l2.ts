import autocannon from 'autocannon';
import { readFileSync } from 'fs';
const cpu = (pid: number) => { const s = readFileSync(`/proc/${pid}/stat`, 'utf8'); const f = s.slice(s.lastIndexOf(')') + 2).split(' '); return (Number(f[11]) + Number(f[12])) * 10; };
(async () => {
  for (let k = 2; k < process.argv.length; k += 2) {
  const [port, pid] = [Number(process.argv[k]), Number(process.argv[k+1])];
  await autocannon({ url: `http://127.0.0.1:${port}/wechat`, method: 'POST', body: 'x'.repeat(300), connections: 32, duration: 1 });
  const c0 = cpu(pid);
  const r = await autocannon({ url: `http://127.0.0.1:${port}/wechat`, method: 'POST', body: 'x'.repeat(300), connections: 32, duration: 4 });
  console.log(port, Math.round(r.requests.average), 'req/s', ((cpu(pid) - c0) * 1000 / r.requests.total).toFixed(1), 'µs/req', r.throughput.average);
  }
})();
