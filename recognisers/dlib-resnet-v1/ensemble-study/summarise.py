"""Table of run_ens.py results (results-AB.json, results-A1A2.json here) as Markdown."""
import os
os.chdir(os.path.dirname(os.path.abspath(__file__)))
import json, numpy as np
AB = json.load(open('results-AB.json')); AA = json.load(open('results-A1A2.json'))
def val(S):  # ratio, or lower bound as >x
    return S['ratio'] if S['ratio'] is not None else S['lower_bound']
def fmt(v): return ' / '.join(('%.1f' % x) for x in v)
rows = []
key = lambda x: (x['config'], x['E'], x['agg'])
keys = sorted({key(x) for x in AB}, key=lambda k: (k[0], k[1], k[2] != 'raw'))
lines = ["| config | E | agg | B ratio S80 (3 ens. seeds) | mean | B ratio S70 | mean | B FMR S80 | B FNMR S80 | A1/A2 ratio S70 | mean |",
         "|---|---|---|---|---|---|---|---|---|---|---|"]
summ = {}
for k in keys:
    b = sorted([x for x in AB if key(x) == k], key=lambda x: x['ens_seed'])
    a = sorted([x for x in AA if key(x) == k], key=lambda x: x['ens_seed'])
    r80 = [val(x['S80']) for x in b]; r70 = [val(x['S70']) for x in b]
    lb80 = ['>' if x['S80']['ratio'] is None else '' for x in b]
    fm = [x['S80']['overall_fmr'] for x in b]; fn = [x['S80']['fnmr'] for x in b]
    a70 = [val(x['S70']) for x in a]
    summ[k] = dict(b80=r80, b70=r70, fmr=fm, fnmr=fn, a70=a70)
    lines.append(f"| {k[0]} | {k[1]} | {k[2]} | {' / '.join(l+('%.1f'%v) for l,v in zip(lb80,r80))} | {np.mean(r80):.1f} | {fmt(r70)} | {np.mean(r70):.1f} | "
                 f"{min(fm):.2e}-{max(fm):.2e} | {100*min(fn):.1f}-{100*max(fn):.1f}% | {fmt(a70)} | {np.mean(a70):.2f} |")
open('table.md', 'w').write('\n'.join(lines) + '\n')
print('\n'.join(lines))
ens = {k: v for k, v in summ.items() if k[1] >= 5}
best = min(ens, key=lambda k: np.mean(ens[k]['a70']))
print('best ensemble by A1/A2 mean S70 ratio:', best, np.mean(ens[best]['a70']))
json.dump(dict(best=list(best)), open('best.json', 'w'))
