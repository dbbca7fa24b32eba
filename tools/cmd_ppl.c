/* dlqat ppl --model M --text FILE | --tokens FILE [--ctx N] [--batch B] [--max-windows N] [--protocol gptq|llama.cpp] [--json FILE] */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "eval/ppl.h"
#include "tokenizer/tokenizer.h"

static void progress(int64_t done, int64_t total, double el, void *user) {
    cli_progress("ppl", done, total, el, (double)*(int *)user, "tok/s");
}
static void progress_rows(int64_t done, int64_t total, double el, void *user) {
    cli_progress("ppl", done, total, el, 1, "rows/s");
}

int cmd_ppl(int argc, char **argv) {
    cli_args a = {argc, argv, 0, "ppl", 0};
    const char *adapter = NULL, *model = NULL, *text = NULL, *tokens = NULL, *tok = NULL, *json = NULL;
    int ctx = 0, batch = 1, llamacpp = 0;
    long long maxw = 0;
    while (cli_next(&a)) {
        if (cli_is(&a, "--help", "-h")) {
            printf("usage: dlqat ppl --model M --text FILE|--tokens FILE [options]\n"
                   "  --tokens FILE    token file (dlqat sample; docs/data.md): each row is one window\n"
                   "  --ctx N          window length (default: the model's context)\n"
                   "  --batch B        windows per forward pass (default 1)\n"
                   "  --max-windows N  evaluate only the first N windows (chunks)\n"
                   "  --protocol P     gptq (default) or llama.cpp: llama-perplexity's chunks of --ctx, each\n"
                   "                   started with BOS, only the second half of each chunk scored\n"
                   "  --adapter DIR    merge a PEFT LoRA adapter into the model first\n"
                   "  --tokenizer F    tokenizer file (llama2.c tokenizer.bin, tokenizer.model, tokenizer.json)\n"
                   "  --json FILE      write {\"ppl\", \"nll\", \"tokens\", \"windows\", \"ctx\", ...}\n"
                   "Protocol: the whole file is tokenized once with one BOS at the start, cut into\n"
                   "non-overlapping windows of N tokens (tail dropped); ppl = exp(mean window NLL).\n"
                   "With --tokens no tokenizer is needed: the rows are the windows (--ctx must be unset).\n"
                   "--protocol llama.cpp gives the number `llama-perplexity -c N --chunks M` prints for the\n"
                   "same model and file (docs/eval.md).\n");
            return 0;
        } else if (cli_is(&a, "--model", "-m")) model = cli_str(&a);
        else if (cli_is(&a, "--text", NULL)) text = cli_str(&a);
        else if (cli_is(&a, "--tokens", NULL)) tokens = cli_str(&a);
        else if (cli_is(&a, "--tokenizer", NULL)) tok = cli_str(&a);
        else if (cli_is(&a, "--adapter", NULL)) adapter = cli_str(&a);
        else if (cli_is(&a, "--json", NULL)) json = cli_str(&a);
        else if (cli_is(&a, "--ctx", NULL)) ctx = (int)cli_int(&a, 2, 1 << 20);
        else if (cli_is(&a, "--batch", NULL)) batch = (int)cli_int(&a, 1, 4096);
        else if (cli_is(&a, "--max-windows", NULL)) maxw = cli_int(&a, 1, 1LL << 40);
        else if (cli_is(&a, "--protocol", NULL)) {
            const char *p = cli_str(&a);
            if (!strcmp(p, "llama.cpp") || !strcmp(p, "llamacpp")) llamacpp = 1;
            else if (!strcmp(p, "gptq")) llamacpp = 0;
            else { fprintf(stderr, "dlqat ppl: --protocol is gptq or llama.cpp, not '%s'\n", p); return 2; }
        } else cli_unknown(&a);
    }
    if (!model || !text == !tokens) { fprintf(stderr, "dlqat ppl: --model and one of --text or --tokens are required\n"); return 2; }
    if (tokens && ctx) { fprintf(stderr, "dlqat ppl: --ctx does not apply to --tokens (the file's rows are the windows)\n"); return 2; }
    if (tokens && llamacpp) { fprintf(stderr, "dlqat ppl: --protocol llama.cpp scores text (--text), not token rows\n"); return 2; }
    dlq_model *m;
    if (cli_load_model(&m, model, tok, adapter)) return 1;
    dlq_err err = {0};
    dlq_ppl_result r;
    int rc;
    if (tokens) {
        rc = dlq_ppl_eval_tokens(m, tokens, batch, maxw, progress_rows, NULL, &r, &err);
        text = tokens;
        goto report;
    }
    if (!m->tok) {
        fprintf(stderr, "dlqat ppl: %s has no tokenizer; pass --tokenizer FILE\n", model);
        dlq_model_destroy(m);
        return 1;
    }
    if (!ctx) ctx = m->cfg.max_seq;
    size_t len;
    char *buf = cli_read_text(text, &len);
    int32_t *ids;
    size_t n;
    double t0 = cli_now();
    /* llama.cpp tokenizes with the vocabulary's own BOS policy (common_tokenize, add_special) */
    int add_bos = llamacpp ? dlq_tok_add_bos(m->tok) : 1;
    rc = dlq_tok_encode(m->tok, buf, len, add_bos, &ids, &n, &err);
    free(buf);
    if (rc) { fprintf(stderr, "dlqat ppl: tokenizing %s: %s\n", text, err.msg); dlq_model_destroy(m); return 1; }
    fprintf(stderr, "[ppl] %s: %zu bytes -> %zu tokens in %.2fs; %lld windows of %d\n", text, len, n,
            cli_now() - t0, (long long)(n / (size_t)ctx), ctx);
    if (llamacpp)
        rc = dlq_ppl_eval_llamacpp(m, ids, (int64_t)n, ctx, batch, maxw, add_bos ? dlq_tok_bos(m->tok) : -1, progress, &ctx,
                                   &r, &err);
    else
        rc = dlq_ppl_eval(m, ids, (int64_t)n, ctx, batch, maxw, progress, &ctx, &r, &err);
    free(ids);
report:    if (rc) { fprintf(stderr, "dlqat ppl: %s\n", err.msg); dlq_model_destroy(m); return 1; }
    printf("| model | ctx | windows | tokens | nll | ppl | tok/s |\n|---|---|---|---|---|---|---|\n");
    printf("| %s | %d | %lld | %lld | %.6f | %.4f | %.0f |\n", model, r.ctx, (long long)r.windows, (long long)r.tokens,
           r.nll, r.ppl, r.tokens / r.seconds);
    if (json) {
        json_t *o = json_pack("{s:f, s:f, s:I, s:I, s:i, s:s, s:s, s:f, s:f, s:I, s:s}", "ppl", r.ppl, "nll", r.nll, "tokens",
                              (json_int_t)r.tokens, "windows", (json_int_t)r.windows, "ctx", r.ctx, "model", model,
                              tokens ? "tokens_file" : "text", text, "seconds", r.seconds, "tokens_per_s", r.tokens / r.seconds,
                              "peak_rss_kb", (json_int_t)cli_peak_rss_kb(), "protocol", tokens ? "rows" : llamacpp ? "llama.cpp" : "gptq");
        char *s = json_dumps(o, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
        rc = cli_write_json(json, s);
        free(s);
        json_decref(o);
    }
    dlq_model_destroy(m);
    return rc ? 1 : 0;
}
