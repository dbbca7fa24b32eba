/* llama2.c checkpoints (.bin, "version 0" export of karpathy/llama2.c):
 * 7 x int32 header (dim, hidden_dim, n_layers, n_heads, n_kv_heads,
 * vocab_size, seq_len); a negative vocab_size means the classifier is NOT
 * shared with the token embedding (an extra wcls tensor at the end). Then
 * fp32 tensors in this order: token_embedding (vocab, dim), rms_att (L, dim),
 * wq (L, dim, dim), wk (L, kv_dim, dim), wv (L, kv_dim, dim), wo (L, dim, dim),
 * rms_ffn (L, dim), w1 (L, hidden, dim), w2 (L, dim, hidden), w3 (L, hidden, dim),
 * rms_final (dim), freq_cis_real (seq_len, head_dim/2), freq_cis_imag (same),
 * [wcls (vocab, dim)]. The file size must match exactly. */
#ifndef DLQ_IO_LLAMA2C_H
#define DLQ_IO_LLAMA2C_H

#include <stdint.h>

#include "core/err.h"
#include "core/mapfile.h"
#include "core/tensor.h"

typedef struct dlq_llama2c {
    dlq_mapfile file;
    int32_t dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
    int shared_classifier;
    /* Pointers into the mapping (fp32, possibly unaligned-safe since the
     * header is 28 bytes: use memcpy or dlq_to_f32 when reading). */
    const float *tok_emb, *rms_att, *wq, *wk, *wv, *wo, *rms_ffn, *w1, *w2, *w3, *rms_final, *wcls;
} dlq_llama2c;

int dlq_llama2c_open(dlq_llama2c *m, const char *path, dlq_err *err);
/* Validates an in-memory image (not owned). */
int dlq_llama2c_parse(dlq_llama2c *m, const uint8_t *data, size_t size, const char *what, dlq_err *err);
void dlq_llama2c_close(dlq_llama2c *m);

#endif
