"""Probe for the README's data-free section (issue 8): PyTorch full QAT of stories260K at W4 g32 in a
rotated basis, to test what could still move the W4 g32 result beyond what `dlqat quantize` does.

  1. Fold the RMSNorm weights, rotate the residual stream by a random sign x Sylvester-Hadamard
     matrix R0 and each v/o head by a Hadamard U (QuaRot).
  2. Optionally learn a residual rotation R = exp(A - A^T) R0 (SpinQuant R1, Adam on A, KL of the
     min-max RTN model to the FP one through a straight-through round): RSTEPS steps, lr RLR.
  3. Full QAT in that basis: every quantized weight, each group's scale and offset (STE round),
     the norms, the embedding and the head trainable, KL to the FP model, QSTEPS steps, batch 4.
     Options that are not in dlqat:
       JLR=x   keep learning an extra residual rotation jointly with the QAT (Adam lr x)
       BIAS=1  trainable biases on all seven projections (llama.cpp and HF LlamaConfig
               attention_bias / mlp_bias can hold them)
       CSCALE=1 trainable per-input-channel scales of down_proj and o_proj (foldable exactly into
               the rows of up_proj / v_proj and their group scales, like the norms for the others)
Prints the FP, RTN and final mean NLL on the first 128 evaluation rows and the share of the
RTN-to-FP gap closed (RTN of the unrotated model on those rows: W4 4.8916). Needs torch
(scripts/setup_python.sh) and the token files of run_datafree.sh:
  RSTEPS=300 QSTEPS=1000 [JLR=2e-3] [BIAS=1] python3 scripts/datafree_qat_probe.py [OUT]
Results of the session-5 runs are in the README ("What we learned about W4 g32")."""
import os, sys, math, time, torch, torch.nn.functional as F
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_llama2c import load_llama2c_bin, load_token_file, Llama2c, rms_norm, rope_interleaved

torch.set_num_threads(1)
torch.manual_seed(0)
OUT = sys.argv[1] if len(sys.argv) > 1 else 'out/datafree'
cfg, w = load_llama2c_bin('models/stories260K/stories260K.bin')
ev = load_token_file(os.path.join(OUT, 'eval.tok'))[:128]
tr = load_token_file(os.path.join(OUT, 'train.tok'))
BITS, G, BS = 4, 32, 4
RSTEPS, RLR = int(os.environ.get('RSTEPS', 300)), float(os.environ.get('RLR', 1e-2))
QSTEPS, JLR, BIAS = int(os.environ.get('QSTEPS', 1000)), float(os.environ.get('JLR', 0)), os.environ.get('BIAS') == '1'
CSCALE = os.environ.get('CSCALE') == '1'
L, d, nh, nkv = cfg['n_layers'], cfg['dim'], cfg['n_heads'], cfg['n_kv_heads']
hs, hid = d // nh, cfg['hidden_dim']
rep = nh // nkv
QK = ['wq', 'wk', 'wv', 'wo', 'w1', 'w2', 'w3']
OUTSIDE = ('wo', 'w2')  # output-side weights: R^T W; the others W R


class RoundSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x): return torch.round(x)

    @staticmethod
    def backward(ctx, g): return g


def groups(W):
    o, i = W.shape
    p = (-i) % G  # the short last group (hidden 172) is padded with its last column
    return (torch.cat([W, W[:, -1:].expand(o, p)], 1) if p else W).reshape(o, -1, G)


def minmax_sb(W):
    Wg = groups(W)
    mx, mn = Wg.amax(-1, keepdim=True), Wg.amin(-1, keepdim=True)
    return (mx - mn).clamp(min=1e-8) / (2 ** BITS - 1), mn


def fq(W, s=None, b=None):
    """fake-quantize W (min-max s, b unless given); straight-through round"""
    if s is None: s, b = minmax_sb(W)
    q = torch.clamp(RoundSTE.apply((groups(W) - b) / s), 0, 2 ** BITS - 1)
    return (q * s + b).reshape(W.shape[0], -1)[:, :W.shape[1]]


def hadamard(n):
    H = torch.ones(1, 1)
    while H.shape[0] < n: H = torch.cat([torch.cat([H, H], 1), torch.cat([H, -H], 1)], 0)
    return H / math.sqrt(n)


m0 = Llama2c(cfg, w)


def forward(p, toks):
    B, T = toks.shape
    cos, sin = m0.cos[:T], m0.sin[:T]
    mask = torch.full((T, T), float('-inf')).triu(1)
    bz = lambda n, l: p[n][l] if n in p else 0
    x = p['token_embedding'][toks]
    for l in range(L):
        h = rms_norm(x, p['rms_att'][l])
        q = (h @ p['wq'][l].T + bz('bq', l)).view(B, T, nh, hs)
        k = (h @ p['wk'][l].T + bz('bk', l)).view(B, T, nkv, hs)
        v = (h @ p['wv'][l].T + bz('bv', l)).view(B, T, nkv, hs)
        q, k = rope_interleaved(q, cos, sin), rope_interleaved(k, cos, sin)
        k, v = k.repeat_interleave(rep, 2), v.repeat_interleave(rep, 2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
        o = (((q @ k.transpose(-1, -2)) / math.sqrt(hs) + mask).softmax(-1) @ v).transpose(1, 2).reshape(B, T, d)
        x = x + o @ p['wo'][l].T + bz('bo', l)
        h = rms_norm(x, p['rms_ffn'][l])
        x = x + (F.silu(h @ p['w1'][l].T + bz('b1', l)) * (h @ p['w3'][l].T + bz('b3', l))) @ p['w2'][l].T + bz('b2', l)
    return rms_norm(x, p['rms_final']) @ p['wcls'].T


def nll(p, toks=ev, bs=32):
    tot, n = 0.0, 0
    with torch.no_grad():
        for i in range(0, toks.shape[0], bs):
            t = toks[i:i + bs]
            lg = forward(p, t[:, :-1])
            tot += F.cross_entropy(lg.reshape(-1, lg.shape[-1]), t[:, 1:].reshape(-1), reduction='sum').item()
            n += t[:, 1:].numel()
    return tot / n


def kl_step(student_params, toks):
    with torch.no_grad(): pt = F.log_softmax(forward(w, toks), -1)
    lq = F.log_softmax(forward(student_params, toks), -1)
    return (pt.exp() * (pt - lq)).sum(-1).mean()


# 1. fold the norms, random Hadamard residual rotation R0, Hadamard U on v/o heads
g = torch.Generator().manual_seed(1)
R0 = torch.diag((torch.randint(0, 2, (d,), generator=g) * 2 - 1).float()) @ hadamard(d)
U = hadamard(hs)
fw = {k: w[k].clone() for k in QK}
for l in range(L):
    for k in ['wq', 'wk', 'wv']: fw[k][l] = w[k][l] * w['rms_att'][l][None, :]
    for k in ['w1', 'w3']: fw[k][l] = w[k][l] * w['rms_ffn'][l][None, :]
    fw['wv'][l] = (U @ fw['wv'][l].view(nkv, hs, d)).reshape(nkv * hs, d)
    fw['wo'][l] = (fw['wo'][l].view(d, nh, hs) @ U.T).reshape(d, d)
head = (w['token_embedding'] if 'wcls' not in w else w['wcls']) * w['rms_final'][None, :]
emb = w['token_embedding']
w = dict(w)
w.setdefault('wcls', w['token_embedding'])


def rotated(R, quant):
    """the model in the residual basis x' = x R (row vectors), min-max RTN'd if quant"""
    Q = fq if quant else (lambda x: x)
    out = {'token_embedding': emb @ R, 'wcls': head @ R, 'rms_final': torch.ones(d),
           'rms_att': torch.ones(L, d), 'rms_ffn': torch.ones(L, d)}
    for k in QK:
        out[k] = torch.stack([Q(R.T @ fw[k][l] if k in OUTSIDE else fw[k][l] @ R) for l in range(L)])
    return out


fp = nll(w)
print('fp %.4f, rotated fp %.4f, Hadamard RTN %.4f' % (fp, nll(rotated(R0, False)), nll(rotated(R0, True))), flush=True)

# 2. learned residual rotation (SpinQuant R1) for the RTN model
A = torch.zeros(d, d, requires_grad=True)
opt = torch.optim.Adam([A], lr=RLR)
sch = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(RSTEPS, 1))
gen = torch.Generator().manual_seed(3)
t0 = time.time()
for step in range(RSTEPS):
    toks = tr[torch.randint(0, tr.shape[0], (BS,), generator=gen)][:, :-1]
    loss = kl_step(rotated(torch.linalg.matrix_exp(A - A.T) @ R0, True), toks)
    opt.zero_grad(); loss.backward(); opt.step(); sch.step()
    if step % 100 == 0: print('rotation', step, '%.4f' % loss.item(), '%.0fs' % (time.time() - t0), flush=True)
R = (torch.linalg.matrix_exp(A - A.T) @ R0).detach()
base = rotated(R, False)
r0 = nll(rotated(R, True))
print('RTN in the learned basis (%d steps) %.4f' % (RSTEPS, r0), flush=True)

# 3. full QAT in that basis
lat = {k: base[k].clone().requires_grad_(True) for k in QK}
sb = {}
for k in QK:
    ss, bb = zip(*[minmax_sb(base[k][l]) for l in range(L)])
    sb[k] = (torch.stack(ss).requires_grad_(True), torch.stack(bb).requires_grad_(True))
emb_p = base['token_embedding'].clone().requires_grad_(True)
head_p = base['wcls'].clone().requires_grad_(True)
norms = [torch.ones(L, d, requires_grad=True), torch.ones(L, d, requires_grad=True), torch.ones(d, requires_grad=True)]
bdim = {'bq': nh * hs, 'bk': nkv * hs, 'bv': nkv * hs, 'bo': d, 'b1': hid, 'b3': hid, 'b2': d}
bias = {k: torch.zeros(L, n, requires_grad=True) for k, n in bdim.items()} if BIAS else {}
A2 = torch.zeros(d, d, requires_grad=True)
cs = {'w2': torch.ones(L, hid, requires_grad=True), 'wo': torch.ones(L, nkv * hs, requires_grad=True)} if CSCALE else {}


def cscale(k, l):
    if k not in cs: return 1
    return cs[k][l] if k == 'w2' else cs[k][l].view(nkv, 1, hs).expand(nkv, rep, hs).reshape(-1)


def student():
    Rx = torch.linalg.matrix_exp(A2 - A2.T) if JLR > 0 else None
    rot = (lambda W, k: W if Rx is None else (Rx.T @ W if k in OUTSIDE else W @ Rx))
    p = {'token_embedding': rot(emb_p, ''), 'wcls': rot(head_p, ''), 'rms_att': norms[0], 'rms_ffn': norms[1],
         'rms_final': norms[2], **bias}
    for k in QK: p[k] = torch.stack([fq(rot(lat[k][l], k), sb[k][0][l], sb[k][1][l]) * cscale(k, l) for l in range(L)])
    return p


groups_ = [{'params': list(lat.values()), 'lr': 1e-3}, {'params': [t for v in sb.values() for t in v], 'lr': 3e-4},
           {'params': [emb_p, head_p] + norms + list(bias.values()) + list(cs.values()), 'lr': 1e-3}]
if JLR > 0: groups_.append({'params': [A2], 'lr': JLR})
opt = torch.optim.Adam(groups_)
sch = torch.optim.lr_scheduler.CosineAnnealingLR(opt, QSTEPS)
gen = torch.Generator().manual_seed(3)
t0 = time.time()
for step in range(QSTEPS):
    toks = tr[torch.randint(0, tr.shape[0], (BS,), generator=gen)][:, :-1]
    loss = kl_step(student(), toks)
    opt.zero_grad(); loss.backward(); opt.step(); sch.step()
    with torch.no_grad():
        for v in sb.values(): v[0].clamp_(min=1e-6)
    if step % 100 == 0: print('qat', step, '%.4f' % loss.item(), '%.0fs' % (time.time() - t0), flush=True)
a = nll({k: v.detach() for k, v in student().items()})
rtn = 4.8916
print('RSTEPS %d QSTEPS %d JLR %g BIAS %d CSCALE %d: RTN-in-basis %.4f, QAT nll %.4f ppl %.2f, closed %.1f %% of the RTN gap'
      % (RSTEPS, QSTEPS, JLR, BIAS, CSCALE, r0, a, math.exp(a), 100 * (rtn - a) / (rtn - fp)))
