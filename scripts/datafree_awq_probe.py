"""Probe for the README's data-free section: does an AWQ-style per-input-channel rescaling
(W[:, j] *= s_j, the preceding RMSNorm weight / up_proj row divided by s_j: the same function)
make round-to-nearest W4 g32 of stories260K much better? s_j = mean|x_j|^alpha with alpha
searched per layer and input (q/k/v, gate/up, down) on 64 training rows, minimising the output
error ||X (W - Q(W diag(s)) diag(s)^-1)^T||^2. Prints FP, RTN and rescaled-RTN mean NLL on the
evaluation rows. Needs torch (scripts/setup_python.sh) and the token files of run_datafree.sh:
  python3 scripts/datafree_awq_probe.py [OUT]      (OUT: out/datafree)"""
import os, sys, math, numpy as np, torch, torch.nn.functional as F
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_llama2c import load_llama2c_bin, load_token_file, mean_nll, Llama2c, rms_norm, rope_interleaved
torch.set_num_threads(1)
OUT = sys.argv[1] if len(sys.argv) > 1 else 'out/datafree'
cfg, w = load_llama2c_bin('models/stories260K/stories260K.bin')
ev = load_token_file(os.path.join(OUT, 'eval.tok'))
tr = load_token_file(os.path.join(OUT, 'train.tok'))[:64]
def nll(w2, toks=ev): return mean_nll(cfg, w2, toks)
def rtn(W, bits=4, g=32):
    o, i = W.shape; Wg = W.reshape(o, i//g, g) if i % g == 0 else None
    if Wg is None:  # ragged: pad groups
        pad = (-i) % g; Wp = torch.cat([W, W[:, -1:].repeat(1, pad)], 1); Q = rtn(Wp, bits, g); return Q[:, :i]
    mx, mn = Wg.amax(-1, keepdim=True), Wg.amin(-1, keepdim=True)
    s = (mx - mn).clamp(min=1e-8) / (2**bits - 1)
    q = ((Wg - mn) / s).round().clamp(0, 2**bits - 1)
    return (q * s + mn).reshape(o, i)
Q = ['wq','wk','wv','wo','w1','w2','w3']
def quant_all(w0):
    w2 = dict(w0)
    for k in Q: w2[k] = torch.stack([rtn(w0[k][l]) for l in range(cfg['n_layers'])])
    return w2
fp = nll(w); print('fp nll %.4f ppl %.2f' % (fp, math.exp(fp)))
r = nll(quant_all(w)); print('rtn nll %.4f ppl %.2f' % (r, math.exp(r)))
# collect inputs per layer on calibration rows (FP model)
@torch.no_grad()
def collect(w0, toks):
    c = cfg; B, T = toks.shape; hs = c['dim']//c['n_heads']; nh, nkv = c['n_heads'], c['n_kv_heads']; rep = nh//nkv
    m = Llama2c(c, w0); cos, sin = m.cos[:T], m.sin[:T]; mask = torch.full((T,T), float('-inf')).triu(1)
    x = w0['token_embedding'][toks]; acts = []
    for l in range(c['n_layers']):
        h = rms_norm(x, w0['rms_att'][l]); a_att = h
        q = (h @ w0['wq'][l].T).view(B,T,nh,hs); k = (h @ w0['wk'][l].T).view(B,T,nkv,hs); v = (h @ w0['wv'][l].T).view(B,T,nkv,hs)
        q, k = rope_interleaved(q,cos,sin), rope_interleaved(k,cos,sin)
        k = k.repeat_interleave(rep,2); v = v.repeat_interleave(rep,2)
        q,k,v = (t.transpose(1,2) for t in (q,k,v))
        o = (((q @ k.transpose(-1,-2))/math.sqrt(hs) + mask).softmax(-1) @ v).transpose(1,2).reshape(B,T,nh*hs)
        a_o = o; x = x + o @ w0['wo'][l].T
        h = rms_norm(x, w0['rms_ffn'][l]); a_ffn = h
        hh = F.silu(h @ w0['w1'][l].T) * (h @ w0['w3'][l].T); a_down = hh
        x = x + hh @ w0['w2'][l].T
        acts.append((a_att.reshape(-1, c['dim']), a_o.reshape(-1, c['dim']), a_ffn.reshape(-1,c['dim']), a_down.reshape(-1, c['hidden_dim'])))
    return acts
acts = collect(w, tr)
def err(Ws, X, s):
    # output error of quantizing W*diag(s) and undoing
    e = 0
    for W in Ws:
        Wq = rtn(W * s[None, :]) / s[None, :]
        e += ((X @ (W - Wq).T) ** 2).sum().item()
    return e
w3 = {k: v.clone() for k, v in w.items()}
alphas = [i/20 for i in range(21)]
for l in range(cfg['n_layers']):
    Xa, Xo, Xf, Xd = acts[l]
    for (names, X, norm) in [(['wq','wk','wv'], Xa, 'rms_att'), (['w1','w3'], Xf, 'rms_ffn'), (['w2'], Xd, None)]:
        mag = X.abs().mean(0).clamp(min=1e-6)
        Ws = [w[n][l] for n in names]
        best = min(alphas, key=lambda a: err(Ws, X, mag ** a / (mag ** a).mean()))
        s = mag ** best / (mag ** best).mean()
        for n in names: w3[n][l] = w[n][l] * s[None, :]
        if norm: w3[norm][l] = w[norm][l] / s
        else: w3['w3'][l] = w3['w3'][l] / s[:, None]   # down's input = silu(w1 x) * (w3 x): scale w3 rows
        print('layer', l, names, 'alpha', best)
print('equiv check nll %.4f (fp %.4f)' % (nll(w3), fp))
a = nll(quant_all(w3)); print('awq+rtn nll %.4f ppl %.2f closed %.1f%%' % (a, math.exp(a), 100*(r-a)/(r-fp)))
