/* llama2.c tokenizer.bin: u32 max_token_length, then per token f32 score,
 * i32 len, len bytes. It is the Llama SentencePiece vocabulary with "▁"
 * written as " " and BOS/EOS written as "\n<s>\n" / "\n</s>\n"; we undo both
 * and load it as an spm tokenizer (bos 1, eos 2, unk 0, byte fallback, dummy
 * prefix), so encoding matches sentencepiece (and llama2.c's own encoder,
 * which adds the dummy prefix " " for non-empty text). */
#include <stdlib.h>
#include <string.h>

#include "core/mapfile.h"
#include "tokenizer/tok_internal.h"

static uint32_t rd_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int is_byte_piece(const uint8_t *p, size_t n) {
    if (n != 6 || memcmp(p, "<0x", 3) != 0 || p[5] != '>') return 0;
    for (int i = 3; i < 5; i++)
        if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'A' && p[i] <= 'F'))) return 0;
    return 1;
}

/* Piece with " " -> "▁" into buf (3 * n bytes). */
static size_t unescape_ws(const uint8_t *p, size_t n, char *buf) {
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == ' ') {
            memcpy(buf + m, "\xe2\x96\x81", 3);
            m += 3;
        } else {
            buf[m++] = (char)p[i];
        }
    }
    return m;
}

static int load_from(dlq_tokenizer **out, const uint8_t *d, size_t size, int32_t vocab_size, const char *path,
                     dlq_err *err) {
    if (size < 4) return dlq_errf(err, DLQ_EFORMAT, "%s: %zu bytes is too short for a llama2.c tokenizer", path, size);
    /* count the tokens (and validate every length) first */
    size_t off = 4, count = 0, maxlen = 0;
    while (off < size && (vocab_size <= 0 || count < (size_t)vocab_size)) {
        if (size - off < 8)
            return dlq_errf(err, DLQ_EFORMAT, "%s: token %zu: truncated header at byte %zu of %zu", path, count, off,
                            size);
        int32_t len = (int32_t)rd_u32(d + off + 4);
        if (len < 0 || (size_t)len > size - off - 8)
            return dlq_errf(err, DLQ_EFORMAT, "%s: token %zu: length %d at byte %zu exceeds the file (%zu bytes)",
                            path, count, len, off + 4, size);
        if ((size_t)len > maxlen) maxlen = (size_t)len;
        off += 8 + (size_t)len;
        count++;
        if (count > INT32_MAX) return dlq_errf(err, DLQ_EFORMAT, "%s: too many tokens", path);
    }
    if (vocab_size > 0 && count < (size_t)vocab_size)
        return dlq_errf(err, DLQ_EFORMAT, "%s: has %zu tokens, the model expects %d (truncated file?)", path, count,
                        vocab_size);
    if (off != size)
        return dlq_errf(err, DLQ_EFORMAT, "%s: %zu unexpected bytes after %zu tokens (vocabulary size mismatch?)", path,
                        size - off, count);
    if (count == 0) return dlq_errf(err, DLQ_EFORMAT, "%s: has no tokens", path);

    dlq_tokenizer *t;
    int rc = dlq_tok_alloc(&t, DLQ_TOK_SPM, (int32_t)count, err);
    if (rc) return rc;
    char *buf = dlq_malloc(3 * maxlen + 1, err);
    if (!buf) {
        dlq_tok_destroy(t);
        return DLQ_ENOMEM;
    }
    off = 4;
    for (int32_t i = 0; i < (int32_t)count && !rc; i++) {
        float score;
        memcpy(&score, d + off, 4);
        size_t len = rd_u32(d + off + 4);
        const uint8_t *p = d + off + 8;
        off += 8 + len;
        int32_t type = DLQ_TOKTYPE_NORMAL;
        size_t m;
        if ((i == 1 || i == 2) && len >= 2 && p[0] == '\n' && p[len - 1] == '\n') {
            m = len - 2; /* "\n<s>\n" -> "<s>" */
            memcpy(buf, p + 1, m);
        } else {
            m = unescape_ws(p, len, buf);
        }
        if (i == 1 || i == 2) type = DLQ_TOKTYPE_CONTROL;
        else if (i == 0 && m == 5 && memcmp(buf, "<unk>", 5) == 0) type = DLQ_TOKTYPE_UNKNOWN;
        else if (is_byte_piece(p, len)) type = DLQ_TOKTYPE_BYTE;
        rc = dlq_tok_set_piece(t, i, buf, m, score, type, err);
    }
    free(buf);
    if (!rc) rc = dlq_tok_finish(t, err);
    if (rc) {
        dlq_tok_destroy(t);
        dlq_err_prefix(err, "%s", path);
        return rc;
    }
    t->unk = t->types[0] == DLQ_TOKTYPE_UNKNOWN ? 0 : -1;
    t->bos = count > 1 ? 1 : -1;
    t->eos = count > 2 ? 2 : -1;
    t->pad = -1;
    t->add_dummy_prefix = 1;
    t->byte_fallback = 1;
    t->add_bos = 1;
    t->add_eos = 0;
    (void)rd_u32(d); /* max_token_length: informational only */
    *out = t;
    return DLQ_OK;
}

int dlq_tok_load_llama2c(dlq_tokenizer **out, const char *path, int32_t vocab_size, dlq_err *err) {
    *out = NULL;
    dlq_mapfile mf;
    int rc = dlq_mapfile_open(&mf, path, err);
    if (rc) return rc;
    rc = load_from(out, mf.data, mf.size, vocab_size, path, err);
    dlq_mapfile_close(&mf);
    return rc;
}

int dlq_tok_load_llama2c_mem(dlq_tokenizer **out, const void *data, size_t size, int32_t vocab_size, const char *what,
                             dlq_err *err) {
    *out = NULL;
    return load_from(out, data, size, vocab_size, what, err);
}
