/* dlqat export: a (.dlq) model to GGUF, a Hugging Face folder or GPTQ
 * (src/export/export.h, docs/export.md). */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "core/mapfile.h"
#include "eval/ppl.h"
#include "export/export.h"
#include "model/forward.h"

static void usage(void) {
    printf("usage: dlqat export --model M.dlq --format gguf|hf|gptq --out PATH [options]\n"
           "  --format gguf           llama.cpp file: 4-bit -> Q4_1, 5-bit -> Q5_1 (exact up to fp16 rounding),\n"
           "                          6..8-bit -> Q8_0, 2-bit -> Q2_K, 3-bit -> Q3_K (approximations, reported)\n"
           "  --format hf             transformers folder with dequantized F16/BF16 safetensors\n"
           "  --format gptq           AutoGPTQ/transformers folder (needs integer zero points: quantize --int-zero)\n"
           "  --exact                 refuse anything not exact up to fp16 rounding\n"
           "  --dtype f16|bf16|f32    dense tensors of hf / gptq exports (default f16)\n"
           "  --ppl-text FILE         measure the perplexity of the source and of the exported model on FILE\n"
           "                          (default for approximate GGUF exports: data/sample/english-mix-valid-sample.txt)\n"
           "  --no-ppl                skip that measurement\n"
           "  --ctx N --max-windows N perplexity window (default the model's context) and window cap (default 16)\n"
           "  --json FILE             write the report as JSON\n"
           "  --ref-logits FILE       write the source model's logits on the first --ref-tokens (default 64) tokens of\n"
           "                          the perplexity text (float32 [T][vocab]) and FILE.json {\"ids\": [...]}, for\n"
           "                          cross-checks by other runtimes (scripts/check_hf_export.py)\n");
}

static const char *DEFAULT_PPL_TEXT = "data/sample/english-mix-valid-sample.txt";

/* the source model's logits on the first T tokens of text */
static int write_ref_logits(const dlq_model *m, const char *text, int T, const char *path) {
    if (!m->tok) { fprintf(stderr, "dlqat export: --ref-logits needs a tokenizer\n"); return 1; }
    size_t len, n;
    char *buf = cli_read_text(text, &len);
    dlq_err err = {0};
    int32_t *ids;
    if (dlq_tok_encode(m->tok, buf, len, 1, &ids, &n, &err)) { free(buf); fprintf(stderr, "dlqat export: %s\n", err.msg); return 1; }
    free(buf);
    if ((size_t)T > n) T = (int)n;
    if (T > m->cfg.max_seq) T = m->cfg.max_seq;
    int V = m->cfg.vocab_size, rc = 1;
    float *lg = malloc(sizeof(float) * (size_t)T * (size_t)V);
    dlq_state *s = NULL;
    if (lg && !dlq_state_create(&s, m, 1, T, T, &err) && !dlq_forward(m, s, ids, 1, T, 0, lg, 0, &err)) {
        FILE *f = fopen(path, "wb");
        if (f && fwrite(lg, sizeof(float), (size_t)T * V, f) == (size_t)T * V && fclose(f) == 0) {
            json_t *a = json_array();
            for (int i = 0; i < T; i++) json_array_append_new(a, json_integer(ids[i]));
            json_t *o = json_pack("{s:o, s:i, s:i}", "ids", a, "T", T, "vocab", V);
            char *js = json_dumps(o, 0), jp[1100];
            snprintf(jp, sizeof jp, "%s.json", path);
            rc = cli_write_json(jp, js);
            free(js);
            json_decref(o);
            if (!rc) fprintf(stderr, "[export] reference logits of %d tokens: %s (+ .json)\n", T, path);
        } else fprintf(stderr, "dlqat export: cannot write %s\n", path);
    } else fprintf(stderr, "dlqat export: reference logits: %s\n", err.msg);
    if (s) dlq_state_destroy(s);
    free(lg);
    free(ids);
    return rc;
}

static int measure_ppl(const char *model_path, const dlq_model *preloaded, const char *text, int ctx, long long maxw,
                       dlq_ppl_result *r) {
    dlq_model *m = (dlq_model *)preloaded;
    if (!m && cli_load_model(&m, model_path, NULL, NULL)) return 1;
    int rc = 1;
    if (!m->tok) fprintf(stderr, "dlqat export: %s has no tokenizer; no perplexity\n", model_path);
    else {
        size_t len;
        char *buf = cli_read_text(text, &len);
        dlq_err err = {0};
        int32_t *ids;
        size_t n;
        if (dlq_tok_encode(m->tok, buf, len, 1, &ids, &n, &err)) fprintf(stderr, "dlqat export: %s: %s\n", text, err.msg);
        else {
            int c = ctx ? ctx : m->cfg.max_seq;
            if ((int64_t)n < c) c = (int)n;
            if (dlq_ppl_eval(m, ids, (int64_t)n, c, 1, maxw, NULL, NULL, r, &err))
                fprintf(stderr, "dlqat export: perplexity of %s: %s\n", model_path, err.msg);
            else rc = 0;
            free(ids);
        }
        free(buf);
    }
    if (!preloaded) dlq_model_destroy(m);
    return rc;
}

int cmd_export(int argc, char **argv) {
    cli_args a = {argc, argv, 0, "export", 0};
    const char *model = NULL, *fmt = NULL, *out = NULL, *json = NULL, *ppl_text = NULL, *tok = NULL, *ref_logits = NULL;
    int exact = 0, no_ppl = 0, ctx = 0, ref_T = 64;
    long long maxw = 16;
    dlq_dtype dt = DLQ_F16;
    while (cli_next(&a)) {
        if (cli_is(&a, "--help", "-h")) { usage(); return 0; }
        else if (cli_is(&a, "--model", "-m")) model = cli_str(&a);
        else if (cli_is(&a, "--format", NULL)) fmt = cli_str(&a);
        else if (cli_is(&a, "--out", "-o")) out = cli_str(&a);
        else if (cli_is(&a, "--tokenizer", NULL)) tok = cli_str(&a);
        else if (cli_is(&a, "--exact", NULL)) exact = 1;
        else if (cli_is(&a, "--no-ppl", NULL)) no_ppl = 1;
        else if (cli_is(&a, "--ppl-text", NULL)) ppl_text = cli_str(&a);
        else if (cli_is(&a, "--ctx", NULL)) ctx = (int)cli_int(&a, 2, 1 << 20);
        else if (cli_is(&a, "--max-windows", NULL)) maxw = cli_int(&a, 1, 1LL << 40);
        else if (cli_is(&a, "--json", NULL)) json = cli_str(&a);
        else if (cli_is(&a, "--ref-logits", NULL)) ref_logits = cli_str(&a);
        else if (cli_is(&a, "--ref-tokens", NULL)) ref_T = (int)cli_int(&a, 1, 1 << 16);
        else if (cli_is(&a, "--dtype", NULL)) {
            const char *d = cli_str(&a);
            if (!d) break;
            if (!strcmp(d, "f16")) dt = DLQ_F16;
            else if (!strcmp(d, "bf16")) dt = DLQ_BF16;
            else if (!strcmp(d, "f32")) dt = DLQ_F32;
            else { fprintf(stderr, "dlqat export: --dtype must be f16, bf16 or f32 (got '%s')\n", d); return 2; }
        } else cli_unknown(&a);
    }
    if (a.bad) return 2;
    if (!model || !fmt || !out) { fprintf(stderr, "dlqat export: --model, --format and --out are required\n"); return 2; }
    int f = !strcmp(fmt, "gguf") ? 1 : !strcmp(fmt, "hf") ? 2 : !strcmp(fmt, "gptq") ? 3 : 0;
    if (!f) { fprintf(stderr, "dlqat export: --format must be gguf, hf or gptq (got '%s')\n", fmt); return 2; }
    if (f == 1 && dt == DLQ_F32) dt = DLQ_F16;
    dlq_model *m;
    if (cli_load_model(&m, model, tok, NULL)) return 1;
    dlq_export_opts o = {.exact = exact, .dtype = dt};
    dlq_export_report r = {0};
    dlq_err err = {0};
    double t0 = cli_now();
    fprintf(stderr, "[export] %s -> %s (%s)\n", model, out, fmt);
    int rc = f == 1 ? dlq_export_gguf(m, out, &o, &r, &err) : f == 2 ? dlq_export_hf(m, out, &o, &r, &err)
                                                                     : dlq_export_gptq(m, out, &o, &r, &err);
    if (rc) {
        fprintf(stderr, "dlqat export: %s\n", err.msg);
        dlq_export_report_free(&r);
        dlq_model_destroy(m);
        return 1;
    }
    for (size_t i = 0; i < r.n_warn; i++) fprintf(stderr, "warning: %s\n", r.warn[i]);
    /* per output type: tensor count and error against the source weights */
    printf("| type | tensors | max abs err | mean abs err |\n|---|---|---|---|\n");
    char seen[32][16];
    int ns = 0;
    for (size_t i = 0; i < r.n; i++) {
        int k;
        for (k = 0; k < ns && strcmp(seen[k], r.t[i].type); k++) {}
        if (k < ns || ns == 32) continue;
        snprintf(seen[ns++], 16, "%s", r.t[i].type);
        int cnt = 0;
        double mx = 0, s = 0;
        int64_t ne = 0;
        for (size_t j = 0; j < r.n; j++)
            if (!strcmp(r.t[j].type, r.t[i].type)) { cnt++; mx = fmax(mx, r.t[j].max_err); s += r.t[j].sum_err; ne += r.t[j].numel; }
        printf("| %s | %d | %.3g | %.3g |\n", r.t[i].type, cnt, mx, ne ? s / (double)ne : 0.0);
    }
    double pmax, pmean;
    dlq_export_report_totals(&r, 1, &pmax, &pmean);
    fprintf(stderr, "[export] wrote %s in %.1fs; quantized weights vs the source: max |err| %.3g, mean |err| %.3g%s\n", out,
            cli_now() - t0, pmax, pmean, r.approx ? " (approximate export)" : "");
    /* perplexity change */
    dlq_ppl_result p0 = {0}, p1 = {0};
    int have_ppl = 0;
    if (!no_ppl && f != 3 && (ppl_text || (f == 1 && r.approx))) {
        const char *text = ppl_text ? ppl_text : DEFAULT_PPL_TEXT;
        if (!dlq_path_exists(text)) fprintf(stderr, "warning: %s not found: perplexity change not measured (--ppl-text FILE)\n", text);
        else if (!measure_ppl(model, m, text, ctx, maxw, &p0) && !measure_ppl(out, NULL, text, ctx, maxw, &p1)) {
            have_ppl = 1;
            printf("\n| model | ctx | windows | ppl |\n|---|---|---|---|\n| %s | %d | %lld | %.4f |\n| %s | %d | %lld | %.4f |\n",
                   model, p0.ctx, (long long)p0.windows, p0.ppl, out, p1.ctx, (long long)p1.windows, p1.ppl);
            fprintf(stderr, "%s[export] perplexity on %s: %.4f -> %.4f (%+.2f%%)\n", r.approx ? "warning: " : "", text, p0.ppl,
                    p1.ppl, 100.0 * (p1.ppl / p0.ppl - 1.0));
        }
    }
    if (ref_logits && write_ref_logits(m, ppl_text ? ppl_text : DEFAULT_PPL_TEXT, ref_T, ref_logits)) rc = 1;
    if (json) {
        json_t *o2 = json_object(), *ts = json_array(), *ws = json_array();
        for (size_t i = 0; i < r.n; i++)
            json_array_append_new(ts, json_pack("{s:s, s:s, s:i, s:i, s:I, s:f, s:f}", "name", r.t[i].name, "type", r.t[i].type,
                                                "bits", r.t[i].bits, "group", r.t[i].group, "numel", (json_int_t)r.t[i].numel,
                                                "max_abs_err", r.t[i].max_err, "mean_abs_err",
                                                r.t[i].numel ? r.t[i].sum_err / (double)r.t[i].numel : 0.0));
        for (size_t i = 0; i < r.n_warn; i++) json_array_append_new(ws, json_string(r.warn[i]));
        json_object_set_new(o2, "model", json_string(model));
        json_object_set_new(o2, "format", json_string(fmt));
        json_object_set_new(o2, "out", json_string(out));
        json_object_set_new(o2, "exact", json_boolean(!r.approx));
        json_object_set_new(o2, "max_abs_err", json_real(pmax));
        json_object_set_new(o2, "mean_abs_err", json_real(pmean));
        if (have_ppl) {
            json_object_set_new(o2, "ppl_source", json_real(p0.ppl));
            json_object_set_new(o2, "ppl_export", json_real(p1.ppl));
            json_object_set_new(o2, "ppl_change_pct", json_real(100.0 * (p1.ppl / p0.ppl - 1.0)));
        }
        json_object_set_new(o2, "warnings", ws);
        json_object_set_new(o2, "tensors", ts);
        char *s = json_dumps(o2, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(8));
        if (cli_write_json(json, s)) rc = 1;
        free(s);
        json_decref(o2);
    }
    dlq_export_report_free(&r);
    dlq_model_destroy(m);
    return rc ? 1 : 0;
}
