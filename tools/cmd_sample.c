/* dlqat sample: data-free training data (LLM-QAT) — N rows of T token ids
 * sampled from the model, written as a token file (docs/data.md). */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "model/sample_rows.h"
#include "train/data.h"

static void progress(int64_t done, int64_t total, double el, void *user) {
    cli_progress("sample", done, total, el, (double)*(int *)user, "tok/s");
}

int cmd_sample(int argc, char **argv) {
    cli_args a = {argc, argv, 0, "sample", 0};
    const char *model = NULL, *out = NULL, *tok = NULL, *adapter = NULL, *json = NULL;
    long long n = 0, bos = -1;
    int T = 0, batch = 32;
    double temp = 1.0, top_p = 1.0;
    long long seed = 0;
    while (cli_next(&a)) {
        if (cli_is(&a, "--help", "-h")) {
            printf("usage: dlqat sample --model M --n N --len T --out FILE [options]\n"
                   "  --n N            rows to sample\n"
                   "  --len T          ids per row, BOS included (T-1 sampled; at most the model's context)\n"
                   "  --temp X         temperature (default 1.0; 0 = greedy)\n"
                   "  --top-p P        nucleus sampling (default 1.0 = off)\n"
                   "  --seed S         row r uses a generator seeded by (S, r) (default 0)\n"
                   "  --batch B        rows decoded together (default 32)\n"
                   "  --bos ID         first id of every row (default: the tokenizer's / config's BOS)\n"
                   "  --tokenizer F --adapter DIR   as for ppl\n"
                   "  --json FILE      write a summary\n"
                   "Writes a DLQTOK01 token file (docs/data.md) usable by quantize/finetune --data and ppl --tokens.\n");
            return 0;
        } else if (cli_is(&a, "--model", "-m")) model = cli_str(&a);
        else if (cli_is(&a, "--out", "-o")) out = cli_str(&a);
        else if (cli_is(&a, "--n", NULL)) n = cli_int(&a, 1, 1LL << 40);
        else if (cli_is(&a, "--len", NULL)) T = (int)cli_int(&a, 2, 1 << 20);
        else if (cli_is(&a, "--temp", NULL)) temp = cli_num(&a, 0, 100);
        else if (cli_is(&a, "--top-p", NULL)) top_p = cli_num(&a, 1e-6, 1);
        else if (cli_is(&a, "--seed", NULL)) seed = cli_int(&a, 0, 1LL << 62);
        else if (cli_is(&a, "--batch", NULL)) batch = (int)cli_int(&a, 1, 1 << 16);
        else if (cli_is(&a, "--bos", NULL)) bos = cli_int(&a, 0, 1LL << 31);
        else if (cli_is(&a, "--tokenizer", NULL)) tok = cli_str(&a);
        else if (cli_is(&a, "--adapter", NULL)) adapter = cli_str(&a);
        else if (cli_is(&a, "--json", NULL)) json = cli_str(&a);
        else cli_unknown(&a);
    }
    if (!model || !out || !n || !T) { fprintf(stderr, "dlqat sample: --model, --n, --len and --out are required\n"); return 2; }
    dlq_model *m;
    if (cli_load_model(&m, model, tok, adapter)) return 1;
    int rc = 1;
    int32_t *ids = NULL;
    dlq_err err = {0};
    if (T > m->cfg.max_seq) {
        fprintf(stderr, "dlqat sample: --len %d exceeds the model's context of %d\n", T, m->cfg.max_seq);
        goto done;
    }
    if (bos < 0) bos = m->tok && dlq_tok_bos(m->tok) >= 0 ? dlq_tok_bos(m->tok) : m->cfg.bos_id;
    if (bos < 0) { fprintf(stderr, "dlqat sample: %s names no BOS token; pass --bos ID\n", model); goto done; }
    if ((unsigned long long)n * (unsigned long long)T > (1ULL << 34)) {
        fprintf(stderr, "dlqat sample: %lld x %d ids is too many for one file\n", n, T);
        goto done;
    }
    ids = malloc((size_t)n * (size_t)T * sizeof *ids);
    if (!ids) { fprintf(stderr, "dlqat sample: out of memory for %lld x %d ids\n", n, T); goto done; }
    dlq_sample_opts so = {.n = n, .T = T, .temp = (float)temp, .top_p = (float)top_p, .seed = (uint64_t)seed,
                          .batch = batch, .bos = (int32_t)bos};
    fprintf(stderr, "[sample] %lld rows x %d ids from %s (temp %g, top-p %g, seed %lld, batch %d, BOS %lld)\n", n, T,
            model, temp, top_p, seed, batch, bos);
    int per_row = T - 1;
    double t0 = cli_now();
    if (dlq_sample_rows(m, &so, ids, progress, &per_row, &err)) { fprintf(stderr, "\ndlqat sample: %s\n", err.msg); goto done; }
    double el = cli_now() - t0;
    if (dlq_tokens_write(out, ids, (uint64_t)n, (uint32_t)T, (uint32_t)m->cfg.vocab_size, &err)) {
        fprintf(stderr, "dlqat sample: %s\n", err.msg);
        goto done;
    }
    fprintf(stderr, "[sample] wrote %s: %lld rows x %d ids in %.1fs (%.0f tok/s)\n", out, n, T, el,
            (double)n * (T - 1) / (el > 0 ? el : 1e-9));
    if (json) {
        json_t *j = json_pack("{s:s, s:s, s:I, s:i, s:f, s:f, s:I, s:i, s:I, s:f, s:f, s:I}", "model", model, "out", out,
                              "rows", (json_int_t)n, "len", T, "temp", temp, "top_p", top_p, "seed", (json_int_t)seed,
                              "batch", batch, "bos", (json_int_t)bos, "seconds", el,
                              "tokens_per_s", (double)n * (T - 1) / (el > 0 ? el : 1e-9),
                              "peak_rss_kb", (json_int_t)cli_peak_rss_kb());
        char *s = json_dumps(j, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
        int wrc = cli_write_json(json, s);
        free(s);
        json_decref(j);
        if (wrc) goto done;
    }
    rc = 0;
done:
    free(ids);
    dlq_model_destroy(m);
    return rc;
}
