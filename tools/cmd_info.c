/* dlqat info MODEL [--tokenizer T] [--json FILE] */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "train/data.h"

/* A DLQTOK01 token file (dlqat sample, dlq_tokens_write): shape and id range. */
static int is_token_file(const char *path) {
    FILE *f = fopen(path, "rb");
    char magic[8] = {0};
    int yes = f && fread(magic, 1, 8, f) == 8 && !memcmp(magic, "DLQTOK01", 8);
    if (f) fclose(f);
    return yes;
}

static int info_tokens(const char *path, const char *json) {
    dlq_err err = {0};
    int32_t *ids;
    uint64_t rows;
    uint32_t T, vocab;
    if (dlq_tokens_read(path, 0, 0, &ids, &rows, &T, &vocab, &err)) { fprintf(stderr, "dlqat info: %s\n", err.msg); return 1; }
    int32_t lo = ids[0], hi = ids[0];
    uint64_t n = rows * T, first_same = 0;
    for (uint64_t i = 0; i < n; i++) {
        lo = ids[i] < lo ? ids[i] : lo;
        hi = ids[i] > hi ? ids[i] : hi;
    }
    for (uint64_t r = 0; r < rows; r++) first_same += ids[r * T] == ids[0];
    printf("file        %s\n", path);
    printf("format      token file (DLQTOK01, little-endian int32, row-major)\n");
    printf("rows        %llu\n", (unsigned long long)rows);
    printf("row length  %u ids (%u predictions per row)\n", T, T - 1);
    printf("ids         %llu, range [%d, %d], vocab %u\n", (unsigned long long)n, lo, hi, vocab);
    printf("first id    %d in %llu of %llu rows\n", ids[0], (unsigned long long)first_same, (unsigned long long)rows);
    printf("row 0       ");
    for (uint32_t j = 0; j < T && j < 16; j++) printf("%d ", ids[j]);
    printf("%s\n", T > 16 ? "..." : "");
    int rc = 0;
    if (json) {
        json_t *o = json_pack("{s:s, s:s, s:I, s:i, s:i, s:i, s:i}", "path", path, "format", "tokens", "rows",
                              (json_int_t)rows, "len", (int)T, "vocab", (int)vocab, "min_id", lo, "max_id", hi);
        char *s = json_dumps(o, JSON_INDENT(2));
        rc = cli_write_json(json, s);
        free(s);
        json_decref(o);
    }
    free(ids);
    return rc ? 1 : 0;
}

static const char *rope_name(dlq_rope_kind k) {
    return k == DLQ_ROPE_LLAMA3 ? "llama3" : k == DLQ_ROPE_LINEAR ? "linear" : "default";
}

int cmd_info(int argc, char **argv) {
    cli_args a = {argc, argv, 0, "info", 0};
    const char *model = NULL, *tok = NULL, *json = NULL;
    while (cli_next(&a)) {
        if (cli_is(&a, "--help", "-h")) {
            printf("usage: dlqat info MODEL|TOKENS [--tokenizer FILE] [--json FILE]\n"
                   "  MODEL: Hugging Face folder, llama2.c .bin, .gguf or .dlq; TOKENS: a DLQTOK01 token file\n");
            return 0;
        } else if (cli_is(&a, "--tokenizer", NULL)) tok = cli_str(&a);
        else if (cli_is(&a, "--json", NULL)) json = cli_str(&a);
        else if (cli_is(&a, "--model", "-m")) model = cli_str(&a);
        else if (a.argv[a.i][0] != '-' && !model) model = a.argv[a.i];
        else cli_unknown(&a);
    }
    if (!model) { fprintf(stderr, "dlqat info: missing MODEL\n"); return 2; }
    if (is_token_file(model)) return info_tokens(model, json);
    dlq_model *m;
    if (cli_load_model(&m, model, tok, NULL)) return 1;
    const dlq_config *c = &m->cfg;
    const char *wdt = dlq_dtype_name(m->layers[0].wq.dtype);
    printf("model       %s\n", m->path);
    printf("format      %s\n", dlq_model_format_name(m->format));
    printf("arch        %s\n", dlq_arch_name(c->arch));
    printf("params      %lld (%.2f M)\n", (long long)dlq_model_n_params(m), dlq_model_n_params(m) / 1e6);
    printf("weights     %s, %.2f MiB\n", wdt, m->weight_bytes / 1048576.0);
    if (m->q_bits) {
        if (m->q_group) printf("quantized   %s, %d-bit, groups of %d\n", m->q_method, m->q_bits, m->q_group);
        else printf("quantized   %s, %d-bit, per-channel\n", m->q_method, m->q_bits);
    }
    printf("layers      %d\n", c->n_layers);
    printf("hidden      %d\n", c->dim);
    printf("mlp         %d\n", c->hidden_dim);
    printf("heads       %d (kv %d, head_dim %d)\n", c->n_heads, c->n_kv_heads, c->head_dim);
    printf("vocab       %d\n", c->vocab_size);
    printf("context     %d\n", c->max_seq);
    printf("rope        theta %g, scaling %s", c->rope_theta, rope_name(c->rope_kind));
    if (c->rope_kind != DLQ_ROPE_DEFAULT) printf(" (factor %g)", c->rope_factor);
    printf("\nnorm eps    %g\n", c->norm_eps);
    printf("tied        %s\n", c->tied ? "yes" : "no");
    if (c->qkv_bias) printf("qkv bias    yes\n");
    if (c->sliding_window) printf("window      %d\n", c->sliding_window);
    if (m->tok)
        printf("tokenizer   %s, %d tokens, bos %d, eos %d, add_bos %s\n",
               dlq_tok_kind_of(m->tok) == DLQ_TOK_SPM ? "sentencepiece-bpe" : "byte-level-bpe",
               dlq_tok_vocab_size(m->tok), dlq_tok_bos(m->tok), dlq_tok_eos(m->tok),
               dlq_tok_add_bos(m->tok) ? "yes" : "no");
    else
        printf("tokenizer   none (use --tokenizer, or token ids)\n");
    int rc = 0;
    if (json) {
        json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:s, s:I, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:s, s:f, s:b, s:b}",
                              "path", m->path, "format", dlq_model_format_name(m->format), "arch", dlq_arch_name(c->arch),
                              "params", (json_int_t)dlq_model_n_params(m), "weight_dtype", wdt,
                              "weight_bytes", (json_int_t)m->weight_bytes, "n_layers", c->n_layers, "hidden_size", c->dim,
                              "intermediate_size", c->hidden_dim, "n_heads", c->n_heads, "n_kv_heads", c->n_kv_heads,
                              "head_dim", c->head_dim, "vocab_size", c->vocab_size, "context", c->max_seq,
                              "rope_theta", (double)c->rope_theta, "rope_scaling", rope_name(c->rope_kind),
                              "rms_norm_eps", (double)c->norm_eps, "tied", c->tied, "qkv_bias", c->qkv_bias);
        if (m->q_bits) json_object_set_new(o, "quant", json_pack("{s:s, s:i, s:i}", "method", m->q_method, "bits", m->q_bits, "group", m->q_group));
        char *s = json_dumps(o, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
        rc = cli_write_json(json, s);
        free(s);
        json_decref(o);
    }
    dlq_model_destroy(m);
    return rc;
}
