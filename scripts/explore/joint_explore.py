#!/usr/bin/env python3
"""Joint-move statistics explored outside the engine (Issue 31): each is computed causally over a
series (train then test rows), its alarm level calibrated on the training rows at 0.1 events a day
(3 of 5 rows, cooldown 12), then read on the joint-move test (harness/src/joint.rs, re-made here with
numpy's generator: same construction, other draws) and on the real test period. Needs numpy."""
import sys
import numpy as np, gzip, csv, os
ROOT=os.environ.get('CORPUS', '../shared/corpora/jumpstarter-d2')  # run from the repository root
def read(p):
    with gzip.open(p,'rt') as f:
        r=csv.reader(f); h=next(r); rows=[[float(x) if x not in ('','nan','NaN') else np.nan for x in row] for row in r]
    return np.array(rows)
def series():
    for s in sorted(os.listdir(ROOT)):
        d=os.path.join(ROOT,s)
        if not os.path.isdir(d): continue
        tr=read(d+'/train.csv.gz'); te=read(d+'/test.csv.gz'); lab=read(d+'/test_labels.csv.gz')
        yield s, tr[:,1:], te[:,1:], lab[:,1].astype(bool)
def robust(v):
    v=v[np.isfinite(v)]
    if len(v)<10: return None
    m=np.median(v); sd=1.4826*np.median(np.abs(v-m))
    return (m,sd) if sd>0 else None
def joint(train, seed=1, tick=300):
    rng=np.random.default_rng(seed)
    split=int(len(train)*0.6); tr=train[:split]; te=train[split:].copy()
    day=288; hour=12
    mov=[]
    for j in range(tr.shape[1]):
        r=robust(tr[:,j])
        if r: mov.append((j,r[1],np.nanmin(tr[:,j]),np.nanmax(tr[:,j])))
    lab=np.zeros(len(te),bool); ds=0
    while ds+day<=len(te):
        L=hour+int(rng.random()*2*hour); room=day-(L+6*hour); st=ds+3*hour+int(rng.random()*room)
        up=rng.random()<0.5
        cols=rng.choice(len(mov),min(4,len(mov)),replace=False)
        for c in cols:
            j,sd,lo,hi=mov[c]
            te[st:st+L,j]=np.clip(te[st:st+L,j]+(sd if up else -sd)*2,lo,hi)
        lab[st:st+L]=True; ds+=day
    return tr,te,lab
def rolling_median(x, w):
    # causal median of x[t-w+1..t], per column
    n=len(x); out=np.full_like(x,np.nan)
    for t in range(n):
        a=x[max(0,t-w+1):t+1]; out[t]=np.nanmedian(a,axis=0)
    return out
def step_stat(x, short=3, base=12, gap=0, norm_days=1, top=4):
    # z of short median vs preceding base-hour median, normalised by trailing robust spread of that same difference
    n,m=x.shape
    sm=rolling_median(x,short)
    bm=np.full_like(x,np.nan); bm[short+gap:]=rolling_median(x,base)[:n-short-gap]
    d=sm-bm
    W=288*norm_days
    J=np.zeros(n)
    for t in range(n):
        lo=max(0,t-W)
        hist=d[lo:t]
        if len(hist)<60: continue
        med=np.nanmedian(hist,axis=0); mad=1.4826*np.nanmedian(np.abs(hist-med),axis=0)
        mad=np.where(mad>0,mad,np.inf)
        z=np.abs((d[t]-med)/mad); z=np.nan_to_num(z,nan=0.0)
        z=np.sort(z)[::-1][:top]
        J[t]=np.sqrt(np.mean(z**2))
    return J
def events(J,T,need=3,of=5,cool=12):
    hit=J>=T; ev=[]; open_=False; last_end=-10**9
    for t in range(len(J)):
        c=hit[max(0,t-of+1):t+1].sum()
        if not open_ and c>=need and t-last_end>cool: open_=True; s=t
        elif open_ and c==0: open_=False; ev.append((s,t)); last_end=t
    if open_: ev.append((s,len(J)-1))
    return ev
def segs(lab):
    out=[];s=None
    for i,v in enumerate(lab):
        if v and s is None: s=i
        if not v and s is not None: out.append((s,i-1)); s=None
    if s is not None: out.append((s,len(lab)-1))
    return out
def score(ev,lab):
    sg=segs(lab)
    caught=sum(any(e[0]<=b and e[1]>=a for e in ev) for a,b in sg)
    fe=sum(not lab[e[0]:e[1]+1].any() for e in ev)
    return caught,len(sg),fe
def calib(Jtrain, budget_per_day, days):
    # smallest T with events on train <= budget*days
    cand=np.unique(np.quantile(Jtrain[Jtrain>0],np.linspace(0.5,1,400)))
    for T in cand:
        if len(events(Jtrain,T))<=budget_per_day*days: return T
    return cand[-1]*1.01
def step_p(x, short=3, base=12, W=288, top=4, kind='step'):
    n,m=x.shape
    sm=rolling_median(x,short)
    if kind=='step':
        bm=np.full_like(x,np.nan); bm[short:]=rolling_median(x,base)[:n-short]
        d=sm-bm
    else:
        d=sm
    J=np.zeros(n)
    for t in range(60,n):
        hist=d[max(0,t-W):t]
        med=np.nanmedian(hist,axis=0)
        a=np.abs(hist-med); v=np.abs(d[t]-med)
        ok=np.isfinite(v)
        N=np.isfinite(a).sum(axis=0)
        ge=(a>=v[None,:]-1e-12*np.abs(v[None,:])).sum(axis=0)
        # ties: a column at its constant value has v=0 => p=1
        p=(1+ge)/(1+N)
        p=np.where(ok&(N>0),np.minimum(p,1),1.0)
        lp=np.sort(-np.log10(p))[::-1][:top]
        J[t]=lp.sum()
    return J
def spe(x, short=3, base=12, W=288*3, k=3, refit=12, kind='step'):
    n,m=x.shape
    sm=rolling_median(x,short)
    if kind=='step':
        bm=np.full_like(x,np.nan); bm[short:]=rolling_median(x,base)[:n-short]
        d=sm-bm
    else: d=sm
    d=np.nan_to_num(d,nan=0.0)
    J=np.zeros(n); P=None
    for t in range(288,n):
        if P is None or t%refit==0:
            h=d[max(0,t-W):t]
            med=np.median(h,axis=0); q=np.quantile(h,0.75,axis=0)-np.quantile(h,0.25,axis=0)
            sd=np.where(q>0,q/1.349,h.std(axis=0)); sd=np.where(sd>0,sd,np.inf)
            z=(h-med)/sd; z=np.clip(z,-10,10)
            U,S,Vt=np.linalg.svd(z-z.mean(0),full_matrices=False)
            V=Vt[:k].T; mu=z.mean(0)
            r=(z-mu)-(z-mu)@V@V.T; hs=np.sort((r**2).sum(1))
        zt=np.clip((d[t]-med)/sd,-10,10)-mu
        r=zt-V@(V.T@zt); q=(r**2).sum()
        # empirical p of q vs the fit history
        p=(1+len(hs)-np.searchsorted(hs,q))/(1+len(hs))
        J[t]=-np.log10(p)
    return J

def main():
    """python3 scripts/explore/joint_explore.py STAT [KWARGS]: STAT is step_p, spe or step_stat."""
    F = globals()[sys.argv[1]] if len(sys.argv) > 1 else spe
    kw = eval(sys.argv[2]) if len(sys.argv) > 2 else {}
    tot = {'joint': [0, 0, 0, 0.0], 'real': [0, 0, 0, 0.0]}
    for s, tr, te, lab in series():
        a, b, jl = joint(tr)
        J = F(np.vstack([a, b]), **kw); n0 = len(a)
        T = calib(J[288:n0], 0.1, (n0 - 288) / 288)
        c, nseg, fe = score(events(J[n0:], T), jl)
        J2 = F(np.vstack([tr, te]), **kw); n2 = len(tr)
        T2 = calib(J2[288:n2], 0.1, (n2 - 288) / 288)
        c2, nseg2, fe2 = score(events(J2[n2:], T2), lab)
        print(s, 'joint', c, '/', nseg, 'fe', fe, '| real', c2, '/', nseg2, 'fe', fe2, flush=True)
        for k, v in (('joint', (c, nseg, fe, len(b) / 288)), ('real', (c2, nseg2, fe2, len(te) / 288))):
            for i in range(4): tot[k][i] += v[i]
    for k, v in tot.items():
        print(k, 'recall', round(v[0] / v[1], 3), 'false events/day', round(v[2] / v[3], 3))

if __name__ == '__main__':
    main()
