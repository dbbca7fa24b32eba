/* llama2.c "version 0" checkpoint reader: 7 x int32 header, fp32 tensors,
 * exact file-size check. See llama2c.h. */
#include "io/llama2c.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* acc += a * b * c with overflow tracking (all operands non-negative) */
static void madd(uint64_t *acc, int *ok, uint64_t a, uint64_t b, uint64_t c) {
    if (!*ok) return;
    if (b && a > UINT64_MAX / b) { *ok = 0; return; }
    uint64_t ab = a * b;
    if (c && ab > UINT64_MAX / c) { *ok = 0; return; }
    uint64_t abc = ab * c;
    if (abc > UINT64_MAX - *acc) { *ok = 0; return; }
    *acc += abc;
}

int dlq_llama2c_parse(dlq_llama2c *m, const uint8_t *data, size_t size, const char *what, dlq_err *err) {
    memset(m, 0, sizeof *m);
    if (!what) what = "<llama2.c>";
    snprintf(m->file.path, sizeof m->file.path, "%s", what);
    if (!data) size = 0;
    if (size < 28)
        return dlq_errf(err, DLQ_EFORMAT, "%s: %zu bytes is too small for a llama2.c header (28 bytes)", what, size);
    int32_t h[7];
    for (int i = 0; i < 7; i++) {
        const uint8_t *p = data + 4 * i;
        h[i] = (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
    }
    static const char *names[7] = {"dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"};
    int32_t dim = h[0], hidden = h[1], L = h[2], nh = h[3], nkv = h[4], vocab = h[5], seq = h[6];
    for (int i = 0; i < 7; i++) {
        if (i == 5) continue;
        if (h[i] <= 0)
            return dlq_errf(err, DLQ_EFORMAT, "%s: header %s = %d, expected > 0 (header: %d %d %d %d %d %d %d)", what,
                            names[i], h[i], h[0], h[1], h[2], h[3], h[4], h[5], h[6]);
    }
    if (vocab == 0 || vocab == INT32_MIN)
        return dlq_errf(err, DLQ_EFORMAT, "%s: header vocab_size = %d, expected non-zero", what, vocab);
    int shared = vocab > 0;
    uint64_t V = (uint64_t)(vocab > 0 ? vocab : -vocab);
    if (dim % nh)
        return dlq_errf(err, DLQ_EFORMAT, "%s: dim %d is not a multiple of n_heads %d", what, dim, nh);
    if (nkv > nh || nh % nkv)
        return dlq_errf(err, DLQ_EFORMAT, "%s: n_heads %d is not a multiple of n_kv_heads %d", what, nh, nkv);
    uint64_t head = (uint64_t)(dim / nh);
    if (head % 2)
        return dlq_errf(err, DLQ_EFORMAT, "%s: head dimension %llu (dim %d / n_heads %d) is odd; RoPE needs it even",
                        what, (unsigned long long)head, dim, nh);
    uint64_t D = (uint64_t)dim, H = (uint64_t)hidden, NL = (uint64_t)L, KV = head * (uint64_t)nkv,
             S = (uint64_t)seq;
    /* offsets (in floats) of each tensor, in file order */
    uint64_t acc = 0, off[13];
    int ok = 1;
    off[0] = acc; madd(&acc, &ok, V, D, 1);          /* token_embedding */
    off[1] = acc; madd(&acc, &ok, NL, D, 1);         /* rms_att */
    off[2] = acc; madd(&acc, &ok, NL, D, D);         /* wq */
    off[3] = acc; madd(&acc, &ok, NL, KV, D);        /* wk */
    off[4] = acc; madd(&acc, &ok, NL, KV, D);        /* wv */
    off[5] = acc; madd(&acc, &ok, NL, D, D);         /* wo */
    off[6] = acc; madd(&acc, &ok, NL, D, 1);         /* rms_ffn */
    off[7] = acc; madd(&acc, &ok, NL, H, D);         /* w1 */
    off[8] = acc; madd(&acc, &ok, NL, D, H);         /* w2 */
    off[9] = acc; madd(&acc, &ok, NL, H, D);         /* w3 */
    off[10] = acc; madd(&acc, &ok, D, 1, 1);         /* rms_final */
    madd(&acc, &ok, S, head / 2, 2);                 /* freq_cis_real + freq_cis_imag */
    off[11] = acc;
    uint64_t no_wcls = acc;
    madd(&acc, &ok, V, D, 1);                        /* wcls */
    uint64_t with_wcls = acc;
    off[12] = 0;
    if (!ok || with_wcls > (UINT64_MAX - 28) / 4)
        return dlq_errf(err, DLQ_EFORMAT, "%s: header (%d %d %d %d %d %d %d) implies a size that overflows", what,
                        h[0], h[1], h[2], h[3], h[4], h[5], h[6]);
    uint64_t want = 28 + 4 * (shared ? no_wcls : with_wcls);
    if ((uint64_t)size != want) {
        uint64_t other = 28 + 4 * (shared ? with_wcls : no_wcls);
        return dlq_errf(err, DLQ_EFORMAT,
                        "%s: file is %zu bytes, header (dim %d, hidden %d, layers %d, heads %d, kv_heads %d, vocab %d, "
                        "seq_len %d) needs exactly %llu%s",
                        what, size, dim, hidden, L, nh, nkv, vocab, seq, (unsigned long long)want,
                        (uint64_t)size == other
                            ? (shared ? " (the size matches an unshared classifier: vocab_size should be negative)"
                                      : " (the size matches a shared classifier: vocab_size should be positive)")
                            : "");
    }
    const float *base = (const float *)(const void *)(data + 28);
    m->dim = dim; m->hidden_dim = hidden; m->n_layers = L; m->n_heads = nh; m->n_kv_heads = nkv;
    m->vocab_size = (int32_t)V; m->seq_len = seq;
    m->shared_classifier = shared;
    m->tok_emb = base + off[0];
    m->rms_att = base + off[1];
    m->wq = base + off[2];
    m->wk = base + off[3];
    m->wv = base + off[4];
    m->wo = base + off[5];
    m->rms_ffn = base + off[6];
    m->w1 = base + off[7];
    m->w2 = base + off[8];
    m->w3 = base + off[9];
    m->rms_final = base + off[10];
    m->wcls = shared ? m->tok_emb : base + off[11];
    return 0;
}

int dlq_llama2c_open(dlq_llama2c *m, const char *path, dlq_err *err) {
    dlq_mapfile mf;
    memset(m, 0, sizeof *m);
    int rc = dlq_mapfile_open(&mf, path, err);
    if (rc) return rc;
    rc = dlq_llama2c_parse(m, mf.data, mf.size, path, err);
    if (rc) {
        dlq_mapfile_close(&mf);
        memset(m, 0, sizeof *m);
        return rc;
    }
    m->file = mf;
    return 0;
}

void dlq_llama2c_close(dlq_llama2c *m) {
    if (!m) return;
    dlq_mapfile_close(&m->file);
    memset(m, 0, sizeof *m);
}
