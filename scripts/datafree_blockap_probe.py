"""Probe for the README's data-free section (issue 8): how far can block-wise reconstruction
(EfficientQAT's Block-AP: every weight, scale and offset of a transformer block trained with a
straight-through estimator to match the full-precision block's output, block after block, each
block fed the output of the already-quantized blocks before it) take stories260K at W4 g32, with
and without a QuaRot-style rotation (ROT=seed: norms folded, random-sign Hadamard on the
residual stream and per head on v/o; dlqat's `quantize --rotate` does the same in C)? Prints
each block's output MSE before/after and the mean NLL on 128 evaluation rows with the share of
the RTN-to-FP gap closed. Needs torch (scripts/setup_python.sh) and run_datafree.sh's token files:
  [BITS=4] [STEPS=300] [ROT=1] [NCAL=256] python3 scripts/datafree_blockap_probe.py [OUT]  (OUT: out/datafree)
Measured (one thread, ~3 min each): 300 steps/block 38.8 % (1000 steps: no lower MSE on blocks
0-2; lr 3e-3: 35.5 %); with ROT=1 46.8 %."""
import os, sys, math, time, numpy as np, torch, torch.nn.functional as F
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_llama2c import load_llama2c_bin, load_token_file, mean_nll, Llama2c, rms_norm, rope_interleaved
torch.set_num_threads(1); torch.manual_seed(0)
OUT = sys.argv[1] if len(sys.argv) > 1 else 'out/datafree'
cfg, w = load_llama2c_bin('models/stories260K/stories260K.bin')
BITS=int(os.environ.get('BITS',4)); G=32; STEPS=int(os.environ.get('STEPS',300)); NCAL=int(os.environ.get('NCAL',256)); BS=8
LRW=float(os.environ.get('LRW',1e-3)); LRS=float(os.environ.get('LRS',1e-3)); TARGETS=os.environ.get('TARGETS','wq,wk,wv,wo,w1,w2,w3').split(',')
ev = load_token_file(os.path.join(OUT, 'eval.tok'))[:128]
tr = load_token_file(os.path.join(OUT, 'train.tok'))[:NCAL]
def nll(w2, toks=ev): return mean_nll(cfg, w2, toks)
L=cfg['n_layers']; d=cfg['dim']; nh=cfg['n_heads']; nkv=cfg['n_kv_heads']; hs=d//nh; rep=nh//nkv
def hadamard(n):
    H = torch.ones(1,1)
    while H.shape[0] < n: H = torch.cat([torch.cat([H,H],1), torch.cat([H,-H],1)],0)
    return H / math.sqrt(n)
def rotate(w0, kind='had', seed=0, vo=True):
    g = torch.Generator().manual_seed(seed)
    d = cfg['dim']; w2 = {k: v.clone() for k, v in w0.items()}
    if kind == 'had':
        sgn = (torch.randint(0, 2, (d,), generator=g) * 2 - 1).float()
        R = torch.diag(sgn) @ hadamard(d)
    else:
        R, _ = torch.linalg.qr(torch.randn(d, d, generator=g))
    # fold norms: W_in <- W_in diag(gamma)
    for l in range(L):
        for k in ['wq','wk','wv']: w2[k][l] = w0[k][l] * w0['rms_att'][l][None,:]
        for k in ['w1','w3']: w2[k][l] = w0[k][l] * w0['rms_ffn'][l][None,:]
        w2['rms_att'][l] = 1; w2['rms_ffn'][l] = 1
    w2['wcls'] = w0['wcls'] * w0['rms_final'][None,:]; w2['rms_final'] = torch.ones(d)
    # residual x -> x R
    w2['token_embedding'] = w0['token_embedding'] @ R
    w2['wcls'] = w2['wcls'] @ R
    for l in range(L):
        for k in ['wq','wk','wv','w1','w3']: w2[k][l] = w2[k][l] @ R      # y = W x, x'=R^T x  -> W R
        for k in ['wo','w2']: w2[k][l] = R.T @ w2[k][l]                  # out' = R^T out
    if vo:
        hs = d // cfg['n_heads']; H = hadamard(hs); nkv = cfg['n_kv_heads']; rep = cfg['n_heads']//nkv
        for l in range(L):
            wv = w2['wv'][l].view(nkv, hs, d); w2['wv'][l] = (H.T @ wv).reshape(nkv*hs, d)
            wo = w2['wo'][l].view(d, cfg['n_heads'], hs); w2['wo'][l] = (wo @ H).reshape(d, d)
    return w2

w_orig = w
if os.environ.get('ROT'): w = rotate(w, 'had', int(os.environ['ROT']))
m0 = Llama2c(cfg, w)
def block(x, p, l):
    B,T,_ = x.shape; cos, sin = m0.cos[:T], m0.sin[:T]
    mask = torch.full((T,T), float('-inf')).triu(1)
    h = rms_norm(x, p['rms_att'])
    q = (h @ p['wq'].T).view(B,T,nh,hs); k = (h @ p['wk'].T).view(B,T,nkv,hs); v = (h @ p['wv'].T).view(B,T,nkv,hs)
    q, k = rope_interleaved(q,cos,sin), rope_interleaved(k,cos,sin)
    k = k.repeat_interleave(rep,2); v = v.repeat_interleave(rep,2)
    q,k,v = (t.transpose(1,2) for t in (q,k,v))
    o = (((q @ k.transpose(-1,-2))/math.sqrt(hs) + mask).softmax(-1) @ v).transpose(1,2).reshape(B,T,d)
    x = x + o @ p['wo'].T
    h = rms_norm(x, p['rms_ffn'])
    return x + (F.silu(h @ p['w1'].T) * (h @ p['w3'].T)) @ p['w2'].T
class RoundSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x): return torch.round(x)
    @staticmethod
    def backward(ctx, g): return g
def pad(W):
    o,i = W.shape; p = (-i) % G
    return torch.cat([W, W[:, -1:].repeat(1, p)], 1) if p else W
class QW:
    def __init__(self, W):
        self.i = W.shape[1]; Wp = pad(W); o, ip = Wp.shape
        Wg = Wp.reshape(o, ip//G, G); mx, mn = Wg.amax(-1, keepdim=True), Wg.amin(-1, keepdim=True)
        s = (mx-mn).clamp(min=1e-8)/(2**BITS-1)
        self.W = Wp.clone().requires_grad_(True); self.s = s.clone().requires_grad_(True); self.z = (-mn/s).clone().requires_grad_(True)
    def __call__(self):
        o, ip = self.W.shape; Wg = self.W.reshape(o, ip//G, G)
        q = torch.clamp(RoundSTE.apply(Wg/self.s) + RoundSTE.apply(self.z), 0, 2**BITS-1)
        return ((q - RoundSTE.apply(self.z)) * self.s).reshape(o, ip)[:, :self.i]
@torch.no_grad()
def hidden(toks, ws_per_layer, upto):
    x = w['token_embedding'][toks]
    for l in range(upto): x = block(x, ws_per_layer[l], l)
    return x
fpl = [{k: w[k][l] for k in ['rms_att','wq','wk','wv','wo','rms_ffn','w1','w2','w3']} for l in range(L)]
ql = []
t0=time.time()
Xfp = w['token_embedding'][tr]; Xq = Xfp.clone()
for l in range(L):
    with torch.no_grad(): Yfp = torch.cat([block(Xfp[i:i+32], fpl[l], l) for i in range(0, NCAL, 32)])
    qw = {k: QW(fpl[l][k]) for k in TARGETS}
    params_w = [q.W for q in qw.values()]; params_s = [t for q in qw.values() for t in (q.s, q.z)]
    opt = torch.optim.AdamW([{'params': params_w, 'lr': LRW}, {'params': params_s, 'lr': LRS}], weight_decay=0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, STEPS)
    def cur():
        p = dict(fpl[l]); 
        for k, q in qw.items(): p[k] = q()
        return p
    with torch.no_grad():
        e0 = sum(F.mse_loss(block(Xq[i:i+32], cur(), l), Yfp[i:i+32]).item() for i in range(0, NCAL, 32))
    g = torch.Generator().manual_seed(l)
    for step in range(STEPS):
        idx = torch.randint(0, NCAL, (BS,), generator=g)
        loss = F.mse_loss(block(Xq[idx], cur(), l), Yfp[idx])
        opt.zero_grad(); loss.backward(); opt.step(); sched.step()
        with torch.no_grad():
            for q in qw.values(): q.s.clamp_(min=1e-6)
    with torch.no_grad():
        p = {k: v.detach() if torch.is_tensor(v) else v for k, v in cur().items()}
        e1 = sum(F.mse_loss(block(Xq[i:i+32], p, l), Yfp[i:i+32]).item() for i in range(0, NCAL, 32))
        ql.append(p)
        Xq = torch.cat([block(Xq[i:i+32], p, l) for i in range(0, NCAL, 32)]); Xfp = Yfp
    print('layer %d mse %.5f -> %.5f  (%.0fs)' % (l, e0, e1, time.time()-t0), flush=True)
w2 = dict(w)
for k in TARGETS: w2[k] = torch.stack([ql[l][k] for l in range(L)])
fp = nll(w)
rtn = nll({**w_orig, **{k: torch.stack([QW(w_orig[k][l])().detach() for l in range(L)]) for k in TARGETS}})  # RTN of the unrotated model
a = nll(w2); print('ROT', os.environ.get('ROT'), 'BITS %d STEPS %d LRW %g LRS %g blockap nll %.4f ppl %.2f closed %.1f%%' % (BITS, STEPS, LRW, LRS, a, math.exp(a), 100*(rtn-a)/(rtn-fp)))
