import { readRows } from '../src/data/rows';
(async () => {
  const t0 = Date.now();
  const r = await readRows('/work/shared/data/arena-sample-999.csv', { requireLabels: true });
  console.log(Date.now() - t0, 'ms', r.rows.length, r.warnings, r.hasLabels, [0,1,2].map(l => r.rows.filter(x => x.label === l).length), r.rows[998].line, r.rows.filter(x=>x.prompt.length>1).length);
})();
