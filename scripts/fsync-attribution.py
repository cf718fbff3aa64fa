"""Attributes the fsyncs of an strace -f -ttt log (with execve/clone lines) to the mesh's processes and
to the scenarios of a timestamped `baemin-bench --progress lines` log: fsyncs per completed operation.
Used by scripts/fsyncs."""
import re,collections,sys
trace,progress=sys.argv[1],sys.argv[2]
prog=[l.split(None,1) for l in open(progress) if 'measuring' in l]
scen=collections.OrderedDict()
for t,rest in prog:
    name=rest.split(':')[0]; m=re.search(r'([\d.]+)/\d+ s measuring, (\d+) /s',rest)
    scen.setdefault(name,[]).append((float(t),float(m.group(1)),int(m.group(2))))
owner={}   # tid -> process label
calls=[]
for l in open(trace):
    p=l.split(None,2)
    if len(p)<3: continue
    tid=int(p[0]); t=float(p[1]); rest=p[2]
    if rest.startswith('execve('):
        if 'serve", "' in rest: owner[tid]=rest.split('serve", "')[1].split('"')[0]
        elif 'nats-server' in rest and '"-c"' in rest: owner[tid]='nats'
        elif tid not in owner: owner[tid]='other'
    m=re.match(r'(clone3?|vfork|fork)\(.*\) = (\d+)',rest) or re.match(r'<\.\.\. (clone3?|vfork|fork) resumed>.* = (\d+)',rest)
    if m: owner.setdefault(int(m.group(2)), ('child-of',tid))
    if rest.startswith('fsync(') or rest.startswith('fdatasync('):
        calls.append((t,tid))
def label(tid,depth=0):
    o=owner.get(tid,'other')
    if isinstance(o,tuple): return label(o[1],depth+1) if depth<50 else 'other'
    return o
names=['payment','call','rider','report','gateway','nats','other']
print('| scenario | ops | '+' | '.join(names)+' | all | per op |')
for name,rows in scen.items():
    t0=rows[0][0]; t1=rows[-1][0]; n=sum(r[2] for r in rows[1:])
    f=[label(c[1]) for c in calls if t0<=c[0]<=t1]
    cnt=collections.Counter(f)
    if not f: continue
    print(f"| {name} | {n} | "+' | '.join(f"{cnt.get(k,0)/n:.2f}" for k in names)+f" | {len(f)} | {len(f)/n:.2f} |")
